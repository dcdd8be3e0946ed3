"""WorkloadGroup auto-registration on a real file store shared by two "replicas".

Two ``AutoRegistration`` listeners (controller ids A and B) on one
``FileStore`` directory stand for two control planes sharing a config store;
the events are the ones the xDS server sends. The grace period is short and
waited for by polling, never by a fixed sleep.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.resource import ResourceKey
from pilotfish.controlplane.auto_registration import (
    CONTROLLER,
    DISCONNECTED_AT,
    GROUP_ANNOTATION,
    AutoRegistration,
)
from pilotfish.store import FileStore
from polling import apoll

GROUP = (
    Path(__file__).resolve().parents[2] / "testdata" / "api" / "bookinfo" / "workload-group.yaml"
)
KEY = ResourceKey("WorkloadEntry", "default", "ratings-vm-10-77-0-5")
GRACE = 0.3

META = {
    "NAMESPACE": "default",
    "SERVICE_ACCOUNT": "bookinfo-ratings",
    "INSTANCE_IPS": "10.77.0.5",
    "LABELS": {"extra": "yes", "app": "ignored"},
    "AUTO_REGISTER_GROUP": "ratings-vm",
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileStore]:
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(GROUP, config / "group.yaml")
    files = FileStore(config, poll_interval=0.02)
    await files.start()
    try:
        yield files
    finally:
        await files.close()


def _pair(store: FileStore) -> tuple[AutoRegistration, AutoRegistration]:
    return (
        AutoRegistration(lambda: store, "A", grace=GRACE),
        AutoRegistration(lambda: store, "B", grace=GRACE),
    )


async def test_a_connected_member_is_an_entry_built_from_the_group(store: FileStore) -> None:
    a, _ = _pair(store)
    a.proxy_connected(1, "ratings-vm-10-77-0-5.default", META, verified=True)
    entry = store.get(KEY)
    assert entry is not None
    spec = entry.spec
    assert isinstance(spec, WorkloadEntrySpec)
    assert (spec.address, spec.service_account, spec.network) == (
        "10.77.0.5",
        "bookinfo-ratings",
        "vm-network",
    )
    assert spec.ports == {"http": 9080}
    # The group's labels win over the proxy's; the sidecar's mTLS is advertised.
    assert spec.labels == {
        "app": "ratings",
        "version": "v4",
        "extra": "yes",
        "security.istio.io/tlsMode": "istio",
    }
    annotations = entry.metadata.annotations
    assert annotations[GROUP_ANNOTATION] == "ratings-vm" and annotations[CONTROLLER] == "A"
    assert annotations["example.com/owner"] == "ratings-team"
    assert DISCONNECTED_AT not in annotations
    # Written as configuration: a file in the store's directory other replicas read.
    assert list((store.write_dir or Path()).rglob("workloadentry-ratings-vm-10-77-0-5.yaml"))


async def test_refusals_register_nothing(store: FileStore) -> None:
    a, _ = _pair(store)
    a.proxy_connected(1, "x.default", META, verified=False)  # plain-text port: a claim
    a.proxy_connected(2, "x.default", {**META, "SERVICE_ACCOUNT": "other"}, verified=True)
    a.proxy_connected(3, "x.default", {**META, "AUTO_REGISTER_GROUP": "nope"}, verified=True)
    a.proxy_connected(
        4, "x.default", {k: v for k, v in META.items() if k != "AUTO_REGISTER_GROUP"}, verified=True
    )
    assert store.list("WorkloadEntry") == []


async def test_the_entry_goes_after_the_grace_period(store: FileStore) -> None:
    a, _ = _pair(store)
    a.proxy_connected(1, "p.default", META, verified=True)
    a.proxy_connected(2, "p.default", META, verified=True)  # a second stream of the proxy
    a.proxy_disconnected(1)
    entry = store.get(KEY)
    assert entry is not None and DISCONNECTED_AT not in entry.metadata.annotations
    a.proxy_disconnected(2)
    entry = store.get(KEY)
    assert entry is not None and DISCONNECTED_AT in entry.metadata.annotations
    await apoll(lambda: store.get(KEY) is None, "the entry to be removed", 5.0, interval=0.02)


async def test_a_reconnect_elsewhere_within_the_grace_keeps_the_entry(store: FileStore) -> None:
    a, b = _pair(store)
    a.proxy_connected(1, "p.default", META, verified=True)
    a.proxy_disconnected(1)
    b.proxy_connected(7, "p.default", META, verified=True)
    entry = store.get(KEY)
    assert entry is not None and entry.metadata.annotations[CONTROLLER] == "B"
    # A's timer fires and finds the entry B's: it stays. Then B's proxy leaves too.
    await apoll(lambda: not a._timers, "A's grace timer to fire", 5.0, interval=0.02)
    assert store.get(KEY) is not None
    b.proxy_disconnected(7)
    await apoll(lambda: store.get(KEY) is None, "the entry to be removed", 5.0, interval=0.02)


async def test_a_restarted_replica_sweeps_what_it_held(store: FileStore) -> None:
    a, _ = _pair(store)
    a.proxy_connected(1, "p.default", META, verified=True)
    await a.close()  # stopped: its streams' ends are no disconnects
    assert store.get(KEY) is not None
    again = AutoRegistration(lambda: store, "A", grace=GRACE)
    again.sweep()  # holds an entry without a stream here: marked disconnected
    entry = store.get(KEY)
    assert entry is not None and DISCONNECTED_AT in entry.metadata.annotations
    await apoll(lambda: (again.sweep(), store.get(KEY))[1] is None, "the sweep to remove it", 5.0)


async def test_a_user_written_entry_of_that_name_is_left_alone(store: FileStore) -> None:
    from pilotfish.runtime.registration import workload_entry

    store.apply(workload_entry(KEY.name, "default", "10.9.9.9", {"app": "mine"}, "default"))
    a, _ = _pair(store)
    a.proxy_connected(1, "p.default", META, verified=True)
    a.proxy_disconnected(1)
    a.sweep()
    entry = store.get(KEY)
    assert entry is not None and isinstance(entry.spec, WorkloadEntrySpec)
    assert entry.spec.address == "10.9.9.9"
