"""Fixtures for the store tests."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from etcdkit import EtcdServer, etcd_missing
from pilotfish.store import FileStore


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
async def store(config_dir: Path) -> AsyncIterator[FileStore]:
    """A store on ``config_dir`` polling every 10 ms, not started: tests write files first."""
    store = FileStore(config_dir, poll_interval=0.01)
    yield store
    await store.close()


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    """A real etcd on this lane's loopback ports, stopped (data removed) also on failure."""
    missing = etcd_missing()
    if missing:
        pytest.skip(missing)
    server = EtcdServer(tmp_path / "etcd-data", tmp_path / "etcd.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
