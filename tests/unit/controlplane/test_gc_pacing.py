"""The control plane freezes what its pushes leave, as they happen; when the
heap has doubled it walks everything once, so frozen cycles cannot pile up."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from pilotfish.api.loader import load_text
from pilotfish.controlplane.gc_pacing import GcPacer
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store import MemoryStore
from polling import apoll


class _Node:
    other: object = None


class _Server:
    def __init__(self) -> None:
        self.pushes = 0
        self.busy = False
        self.heap = 1000  # the heap's size, as the pacer measures it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freezes_once_per_check_with_activity(unfrozen: None) -> None:
    now = [100.0]
    server = _Server()
    gc.freeze()  # as the control plane does at start: what it loaded
    pacer = GcPacer(
        lambda: server.pushes,
        lambda: server.busy,
        clock=lambda: now[0],
        heap_size=lambda: server.heap,
    )
    assert pacer.step() is None  # nothing done yet
    frozen = gc.get_freeze_count()
    created = [[] for _ in range(1000)]  # objects the collector tracks
    server.pushes += 1
    server.busy = True  # still pushing: a freeze costs nothing, so it goes on
    assert pacer.step() == "freeze"
    assert gc.get_freeze_count() >= frozen + len(created)
    assert pacer.step() is None  # nothing since
    assert pacer.freezes == 1 and pacer.sweeps == 0


def test_a_sweep_frees_frozen_cycles_once_the_heap_doubled(unfrozen: None) -> None:
    now = [0.0]
    server = _Server()
    pacer = GcPacer(
        lambda: server.pushes,
        lambda: server.busy,
        sweep_quiet=1.0,
        clock=lambda: now[0],
        heap_size=lambda: server.heap,
    )

    node = _Node()
    node.other = node  # a cycle: only the collector can free it
    alive = weakref.ref(node)
    server.pushes += 1
    server.heap = 2500  # more than doubled since start: a sweep is due
    assert pacer.step() == "freeze"
    del node
    gc.collect()
    assert alive() is not None, "a frozen cycle is out of the collector's sight"

    now[0] += 0.5
    assert pacer.step() is None  # not quiet for long enough
    now[0] += 0.6
    server.busy = True
    assert pacer.step() is None  # responses still being written
    server.busy = False
    assert pacer.step() == "sweep"
    assert alive() is None

    now[0] += 2.0
    server.pushes += 1
    server.heap = 4000  # grown, not doubled since the sweep (at 2500): none due
    assert pacer.step() == "freeze"
    now[0] += 2.0
    assert pacer.step() is None


def test_under_changes_that_never_pause_a_due_sweep_runs_anyway(unfrozen: None) -> None:
    now = [0.0]
    server = _Server()
    server.heap = 1
    pacer = GcPacer(
        lambda: server.pushes,
        lambda: True,
        sweep_within=30.0,
        clock=lambda: now[0],
        heap_size=lambda: server.heap,
    )
    server.heap = 3  # tripled: a sweep is due from the first push
    done = []
    for _ in range(400):  # a push every 100 ms for 40 s, always busy
        server.pushes += 1
        now[0] += 0.1
        done.append(pacer.step())
    assert done[0] == "freeze"
    assert done.count("sweep") == 1
    assert done.index("sweep") == 300  # 30 s later, between two pushes
    assert pacer.sweeps == 1


SERVICE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger, namespace: default}
spec:
  hosts: [ledger.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
"""


async def test_the_standalone_control_plane_freezes_after_a_push(unfrozen: None) -> None:
    settings = ControlPlaneSettings(xds_port=0, http_port=0, freeze_gc=True)
    store = MemoryStore()
    cp = ControlPlane(settings, store=store)
    try:
        await cp.start()
        pacer = cp.gc_pacer
        assert pacer is not None
        assert pacer.freezes == pacer.sweeps == 0  # nothing pushed yet
        (resource,) = load_text(SERVICE, "ledger.yaml").resources
        store.apply(resource)  # a new snapshot, pushed (to no proxy)
        await apoll(lambda: pacer.freezes + pacer.sweeps == 1, "a freeze after the push", 10)
    finally:
        await cp.close()


async def test_an_embedded_control_plane_does_not_pace_gc(unfrozen: None) -> None:
    cp = ControlPlane(ControlPlaneSettings(xds_port=0, http_port=0), store=MemoryStore())
    try:
        await cp.start()
        assert cp.gc_pacer is None
    finally:
        await cp.close()
