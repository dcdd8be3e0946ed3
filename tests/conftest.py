"""Suite-wide pytest options and fixtures."""

from __future__ import annotations

import os

import pytest

from lanes import lane_port_range
from pilotfish.runtime.ports import PORT_RANGE_ENV, port_range


def pytest_configure(config: pytest.Config) -> None:
    # A lane (xdist worker) picks ports from its own slice; meshes it starts inherit it.
    lane_range = lane_port_range(*port_range())
    if lane_range is not None:
        os.environ[PORT_RANGE_ENV] = lane_range


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output and delete stale ones",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run was started with ``--update-golden``."""
    return bool(request.config.getoption("--update-golden"))
