"""Fixtures for the store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from etcdkit import etcd_server
from pilotfish.store import FileStore

__all__ = ["config_dir", "etcd_server", "store"]  # etcd_server: the real etcd of tests/etcdkit.py


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
async def store(config_dir: Path) -> AsyncIterator[FileStore]:
    """A store on ``config_dir`` polling every 10 ms, not started: tests write files first."""
    # Polls as often with inotify as without: these tests count polls.
    store = FileStore(config_dir, poll_interval=0.01, covered_poll_interval=0.01)
    yield store
    await store.close()
