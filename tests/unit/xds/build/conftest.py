"""Fixtures of the builder tests."""

from __future__ import annotations

import pytest
from build_samples import make_sample_config

from pilotfish import ir


@pytest.fixture
def sample_config() -> ir.ProxyConfig:
    return make_sample_config()
