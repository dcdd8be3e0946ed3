"""CompositeStore: union reads, shadowing, summed revisions, waking, writes to the primary."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from store_testing import DEADLINE, SERVICE_REVIEWS, resource, virtual_service

from pilotfish.api.resource import ResourceKey
from pilotfish.store import CompositeStore, FileStore, MemoryStore, StoreError

WORKLOAD = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v1-abc
  namespace: default
spec:
  address: 127.0.0.2
  labels:
    app: reviews
    version: v1
"""
WE_KEY = ResourceKey("WorkloadEntry", "default", "reviews-v1-abc")
VS_KEY = ResourceKey("VirtualService", "default", "reviews")


def workload(address: str) -> str:
    return WORKLOAD.replace("127.0.0.2", address)


def test_reads_are_the_union_sorted() -> None:
    primary = MemoryStore([resource(virtual_service()), resource(SERVICE_REVIEWS)])
    overlay = MemoryStore([resource(WORKLOAD)])
    store = CompositeStore(primary, [overlay])
    assert [r.kind for r in store.list()] == ["Service", "VirtualService", "WorkloadEntry"]
    assert [r.kind for r in store.list(kind="WorkloadEntry")] == ["WorkloadEntry"]
    assert store.list(namespace="other") == []
    assert store.get(WE_KEY) is overlay.get(WE_KEY)
    assert store.get(VS_KEY) is primary.get(VS_KEY)
    assert store.get(ResourceKey("Gateway", "default", "x")) is None


def test_primary_wins_and_the_shadowed_object_is_reported() -> None:
    primary = MemoryStore([resource(workload("10.0.0.1"))])
    overlay = MemoryStore([resource(workload("10.0.0.2"))])
    store = CompositeStore(primary, [overlay])
    listed = store.list()
    assert len(listed) == 1
    assert listed[0] is primary.get(WE_KEY)
    assert store.get(WE_KEY) is primary.get(WE_KEY)
    [warning] = store.diagnostics()
    assert not warning.is_error
    assert (warning.kind, warning.namespace, warning.name) == tuple(
        [WE_KEY.kind, WE_KEY.namespace, WE_KEY.name]
    )
    assert "ignored" in warning.message


def test_earlier_overlay_wins_over_later() -> None:
    first = MemoryStore([resource(workload("10.0.0.1"))])
    second = MemoryStore([resource(workload("10.0.0.2"))])
    store = CompositeStore(MemoryStore(), [first, second])
    assert store.list() == [first.get(WE_KEY)]
    assert len(store.diagnostics()) == 1


def test_revision_grows_with_any_part() -> None:
    primary, overlay = MemoryStore(), MemoryStore()
    store = CompositeStore(primary, [overlay])
    assert store.revision == 0
    overlay.apply(resource(WORKLOAD))
    assert store.revision == 1
    primary.apply(resource(virtual_service()))
    assert store.revision == 2
    overlay.delete(WE_KEY)
    assert store.revision == 3


def test_writes_go_to_the_primary() -> None:
    primary, overlay = MemoryStore(), MemoryStore([resource(WORKLOAD)])
    store = CompositeStore(primary, [overlay])
    revision = store.apply(resource(virtual_service()))
    assert revision == store.revision == 2
    assert primary.get(VS_KEY) is not None
    assert overlay.get(VS_KEY) is None
    assert store.delete(VS_KEY) == 3
    assert primary.get(VS_KEY) is None


def test_delete_of_an_overlay_object_is_refused() -> None:
    overlay = MemoryStore([resource(WORKLOAD)])
    store = CompositeStore(MemoryStore(), [overlay])
    with pytest.raises(StoreError, match="live registration"):
        store.delete(WE_KEY)
    assert overlay.get(WE_KEY) is not None
    with pytest.raises(KeyError):
        store.delete(VS_KEY)


async def test_wait_for_change_wakes_on_an_overlay_and_cancels_the_rest() -> None:
    primary, overlay = MemoryStore(), MemoryStore()
    store = CompositeStore(primary, [overlay])
    waiter = asyncio.create_task(store.wait_for_change(0))
    await asyncio.sleep(0)  # let it start waiting on both parts
    assert not waiter.done()
    overlay.apply(resource(WORKLOAD))
    assert await asyncio.wait_for(waiter, DEADLINE) == 1
    # The wait on the primary was cancelled and removed: nothing left behind.
    assert primary._waiters == []
    assert overlay._waiters == []


async def test_wait_for_change_returns_at_once_when_already_newer() -> None:
    store = CompositeStore(MemoryStore([resource(WORKLOAD)]), [])
    assert await asyncio.wait_for(store.wait_for_change(0), DEADLINE) == 1


async def test_cancelled_wait_leaves_no_waiters() -> None:
    primary, overlay = MemoryStore(), MemoryStore()
    store = CompositeStore(primary, [overlay])
    waiter = asyncio.create_task(store.wait_for_change(0))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert primary._waiters == [] and overlay._waiters == []


async def test_file_primary_start_close_and_files_status(config_dir: Path) -> None:
    (config_dir / "vs.yaml").write_text(virtual_service())
    files = FileStore(config_dir, poll_interval=0.01)
    overlay = MemoryStore()
    store = CompositeStore(files, [overlay])
    await store.start()
    try:
        assert store.get(VS_KEY) is not None  # start() loaded the files
        [status] = store.files_status()
        assert status["file"] == str(config_dir / "vs.yaml")
        assert status["state"] == "ok"
        # A file edit reaches a waiter through the composite.
        seen = store.revision
        waiter = asyncio.create_task(store.wait_for_change(seen))
        (config_dir / "vs.yaml").write_text(virtual_service(subset="v2"))
        assert await asyncio.wait_for(waiter, DEADLINE) > seen
    finally:
        await store.close()
    assert files._task is None  # the poller was stopped


def test_files_status_is_empty_without_a_file_primary() -> None:
    assert CompositeStore(MemoryStore(), []).files_status() == []
