"""Auto-registration with control planes sharing one real etcd: an entry one replica
writes is served by the other, and a proxy that moves keeps it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from etcdkit import EtcdServer, etcd_server
from pilotfish.api.loader import load_text
from pilotfish.api.resource import ResourceKey
from pilotfish.controlplane.auto_registration import CONTROLLER, DISCONNECTED_AT
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store.etcd_client import b64, unb64
from polling import apoll

__all__ = ["etcd_server"]

GROUP = Path(__file__).resolve().parents[2] / "testdata/api/bookinfo/workload-group.yaml"
KEY = ResourceKey("WorkloadEntry", "default", "ratings-vm-10-77-0-5")
META = {
    "NAMESPACE": "default",
    "SERVICE_ACCOUNT": "bookinfo-ratings",
    "INSTANCE_IPS": "10.77.0.5",
    "AUTO_REGISTER_GROUP": "ratings-vm",
}


def _replica(server: EtcdServer) -> ControlPlane:
    settings = ControlPlaneSettings(
        xds_port=0,
        http_port=0,
        config_store=server.url,
        leader_ttl_seconds=2,
        workload_entry_grace_seconds=0.5,
    )
    return ControlPlane(settings)


def _in_etcd(server: EtcdServer, name: str) -> bool:
    reply = server.call("/v3/kv/range", {"key": b64("/registry/"), "range_end": b64("/registry0")})
    return any(unb64(kv["key"]).decode().endswith(f"/{name}") for kv in reply.get("kvs", []))


def _in_snapshot(cp: ControlPlane) -> bool:
    return any(r.key == KEY for r in cp.snapshot.resources)


@pytest.fixture
async def replicas(etcd_server: EtcdServer) -> AsyncIterator[tuple[ControlPlane, ControlPlane]]:
    """Two started control planes on one etcd, both holding the WorkloadGroup."""
    first, second = _replica(etcd_server), _replica(etcd_server)
    started: list[ControlPlane] = []
    try:
        for cp in (first, second):
            await cp.start()
            started.append(cp)
        # Controller ids differ: each replica has its own port.
        first.auto_registration.controller, second.auto_registration.controller = "one", "two"
        [group] = load_text(GROUP.read_text(), "group.yaml").resources
        first.store.apply(group)
        await apoll(lambda: second.store.get(group.key), "the group on replica two", 10.0)
        yield first, second
    finally:
        for cp in started:
            await cp.close()


def _held_by(cp: ControlPlane, controller: str) -> bool:
    entry = cp.store.get(KEY)
    return entry is not None and entry.metadata.annotations.get(CONTROLLER) == controller


async def test_an_entry_written_by_one_replica_is_served_by_both(
    replicas: tuple[ControlPlane, ControlPlane],
) -> None:
    first, second = replicas
    first.auto_registration.proxy_connected(1, "p.default", META, verified=True)
    await apoll(lambda: _in_snapshot(second), "replica two serving the entry", 10.0)
    # The proxy moves to replica two within the grace period: the entry stays.
    first.auto_registration.proxy_disconnected(1)
    second.auto_registration.proxy_connected(5, "p.default", META, verified=True)
    await apoll(lambda: _held_by(first, "two"), "replica one to see replica two holding it", 10.0)
    await apoll(lambda: not first.auto_registration._timers, "one's timer", 10.0)
    assert first.store.get(KEY) is not None and _in_snapshot(first)
    second.auto_registration.proxy_disconnected(5)
    await apoll(
        lambda: not _in_snapshot(first) and not _in_snapshot(second),
        "the entry gone from both replicas",
        10.0,
    )


async def test_an_expiry_that_has_not_heard_of_the_takeover_deletes_nothing(
    replicas: tuple[ControlPlane, ControlPlane], etcd_server: EtcdServer
) -> None:
    """Replica one's grace ends before its watch brought in replica two's write:
    its mirror still shows its own disconnected entry, and the delete's compare
    on etcd's mod revision is what keeps the entry."""
    first, second = replicas
    registration = first.auto_registration
    registration.grace = 60.0  # its own timer stays out of the way
    registration.proxy_connected(1, "p.default", META, verified=True)
    await apoll(lambda: second.store.get(KEY), "replica two to see the entry", 10.0)
    # From here on nothing yields to the event loop until the expiry has run.
    registration.proxy_disconnected(1)
    second.auto_registration.proxy_connected(5, "p.default", META, verified=True)
    stale = first.store.get(KEY)
    assert stale is not None and DISCONNECTED_AT in stale.metadata.annotations
    assert _held_by(first, "one")
    registration._clock = lambda: 1e12  # the grace is long over
    registration._expire(KEY)
    assert _in_etcd(etcd_server, KEY.name)
    await apoll(lambda: _held_by(first, "two"), "replica one to see replica two holding it", 10.0)
