"""Fixtures for the api tests."""

from __future__ import annotations

import pytest
from api_testing import Loader, load_snippet


@pytest.fixture
def load() -> Loader:
    """A function loading a dedented YAML snippet as file ``test.yaml``."""
    return load_snippet
