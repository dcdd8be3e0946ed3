"""The control plane paces snapshot builds by the push they feed (``BuildPacer``):
an isolated change is built at once, a change arriving while a push waits is
built once that push has run, not before."""

from __future__ import annotations

from pilotfish.api import loader
from pilotfish.api.resource import Resource
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.model.snapshot import Snapshot
from pilotfish.store import MemoryStore
from polling import apoll


def _service(name: str) -> Resource:
    text = (
        "apiVersion: v1\nkind: Service\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        "spec:\n  selector: {app: x}\n  ports: [{name: http, port: 80}]\n"
    )
    (resource,) = loader.load_text(text, f"{name}.yaml").resources
    return resource


def pushes(cp: ControlPlane) -> int:
    """Pushes run so far (the push-time histogram's count)."""
    return int(cp.registry.get_sample_value("pilotfish_xds_push_seconds_count") or 0)


async def test_a_change_during_a_pending_push_waits_for_that_push() -> None:
    # A long quiet period keeps the second push pending for seconds, so the
    # third change certainly arrives while it waits.
    settings = ControlPlaneSettings(xds_port=0, http_port=0, quiet_period=2.0, max_delay=8.0)
    store = MemoryStore()
    cp = ControlPlane(settings, store=store)
    built: list[tuple[int, bool, int]] = []  # (revision, push pending, pushes run)

    def listener(snapshot: Snapshot) -> None:
        built.append((snapshot.revision, cp.xds.push_pending, pushes(cp)))

    cp.add_snapshot_listener(listener)
    await cp.start()
    try:
        first = store.apply(_service("one"))
        # Isolated: built at once, pushed at once (the debouncer was idle).
        await apoll(lambda: cp.snapshot.revision == first, "first change built", 10)
        await apoll(lambda: not cp.xds.push_pending, "first push ran", 10)
        second = store.apply(_service("two"))
        await apoll(lambda: cp.snapshot.revision == second, "second change built", 10)
        assert cp.xds.push_pending  # its push waits out the quiet period
        pushes_before = pushes(cp)
        third = store.apply(_service("three"))
        await apoll(lambda: cp.snapshot.revision == third, "third change built", 20)
        revision, _, pushes_then = built[-1]
        assert revision == third
        # Built once the pending push had run, not while it waited (without the
        # pacer it is built at once, with that push still pending).
        assert pushes_then == pushes_before + 1, built
        assert [r for r, _, _ in built].count(third) == 1
    finally:
        await cp.close()
