"""`pilotfish up --control-plane-replicas 3`: Bookinfo's proxies spread over three
replicas, an apply through replica 1 reaches the proxies of the others, one replica is
SIGKILLed under load, nothing fails and every proxy is in sync again.
In explicit mode (loopback; the replicas share the etcd addon's store, as the issue's
hosts do) and transparent mode (pods in namespaces reach the replicas on the bridge,
over mTLS only; the file store).

Replica 1 is the supervisor's own control plane; replicas 2 and 3 are
processes the supervisor runs (and restarts). Every proxy was given all three
addresses. The extra replica holding the most proxies is killed while a client
sends 20 requests a second for 10 s through the ingress gateway; afterwards
every proxy is connected and in sync with a live replica, and an apply (served
by replica 1's API) reaches them wherever they are connected.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.replicas_sync import FlipProbe, placement
from e2ekit import (
    NETWORKING,
    SAMPLES,
    E2EMesh,
    PortPicker,
    down_leaves_nothing,
    http_get,
    poll,
    require_root,
)

from etcdkit import etcd_missing
from lanes import lane_bridge
from pilotfish.runtime.control_plane_replicas import PORT_STEP
from pilotfish.runtime.process import read_pid_record

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPLICAS = 3
RATE = 20
LOAD_SECONDS = 10.0
RECONNECT_BOUND = 15.0
APPLY_BOUND = 10.0  # seconds for an apply through replica 1 to reach every proxy
# Bookinfo's six pods: each has a sidecar whose routes name reviews.
BOOKINFO_PODS = 6


@pytest.fixture(scope="module", params=["explicit", "transparent"])
def replicated_mesh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2EMesh]:
    mode = str(request.param)
    if mode == "transparent":
        require_root()  # pods reach every replica on the bridge
    tmp = tmp_path_factory.mktemp(f"replicas-{mode}")
    bridge = lane_bridge("pfe2r")

    ports = PortPicker()  # replica i listens at replica 1's ports + i * PORT_STEP

    def block() -> int:
        return ports.block(REPLICAS, PORT_STEP)

    mesh = E2EMesh(
        tmp / "state",
        mode,
        ports.single(),
        block(),
        block(),
        bridge,
        secure_port=block(),
        xds_mtls_port=block(),
    )
    mesh.extra_up_args = ("--control-plane-replicas", str(REPLICAS))
    if mode == "explicit":
        missing = etcd_missing()
        if missing:
            pytest.fail(f"the etcd addon needs Debian's etcd-server: {missing}")
        mesh.extra_up_args += ("--addons", "etcd", "--etcd-port", str(ports.single()))
    try:
        mesh.up(SAMPLES / "bookinfo.yaml", NETWORKING / "bookinfo-gateway.yaml")
        yield mesh
    finally:
        down_leaves_nothing(mesh, bridge)


def _get(mesh: E2EMesh, replica: int, path: str) -> Any:
    """GET ``path`` of replica ``replica``'s (0-based) API; OSError when it does not answer."""
    url = f"http://127.0.0.1:{mesh.cp_port + PORT_STEP * replica}{path}"
    token = mesh.token_file.read_text().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=2) as resp:
        return json.loads(resp.read())


def _syncz(mesh: E2EMesh, replica: int) -> list[dict[str, Any]]:
    """Replica ``replica``'s (0-based) connected proxies; [] when it does not answer."""
    try:
        return list(_get(mesh, replica, "/debug/syncz"))
    except OSError:
        return []


def _in_sync(row: dict[str, Any]) -> bool:
    types = [t for t in row["types"].values() if t["subscribed"]]
    return bool(types) and all(
        t["sent_version"] and t["acked_version"] == t["sent_version"] for t in types
    )


def _placement(mesh: E2EMesh) -> dict[str, int]:
    """proxy id -> the replica it is connected and in sync with."""
    return {
        row["proxy_id"]: replica
        for replica in range(REPLICAS)
        for row in _syncz(mesh, replica)
        if _in_sync(row)
    }


def _replica_pid(mesh: E2EMesh, replica: int) -> int:
    record = mesh.state_dir / "pods" / f"control-plane-{replica + 1}" / "pids.json"
    [process] = read_pid_record(record).values()
    return process.pid


def test_an_apply_through_replica_one_reaches_the_other_replicas_proxies(
    replicated_mesh: E2EMesh, tmp_path: Path
) -> None:
    """Five VirtualService weight flips through replica 1's API: each reaches every
    proxy whose routes it changes, on every replica, within APPLY_BOUND seconds. A
    proxy has it when it ACKed the route version it ACKed in that state before
    (versions are content digests, the same whichever replica computes them)."""
    mesh = replicated_mesh
    mesh.cli("apply", "-f", str(NETWORKING / "destination-rule-all.yaml"))

    def apply_file(path: Path) -> None:
        mesh.cli("apply", "-f", str(path))

    probe = FlipProbe(
        lambda replica, path: _get(mesh, replica, path),
        apply_file,
        REPLICAS,
        tmp_path,
        deadline_s=APPLY_BOUND,
    )
    reached = probe.learn()
    where = placement(probe.syncz())
    elsewhere = {p for p in reached if where.get(p, 0) != 0}
    # Every sidecar calls reviews (the ingress gateway's routes do not name it).
    assert len(reached) == BOOKINFO_PODS, (reached, where)
    assert elsewhere, f"no proxy the flip reaches is on replicas 2..{REPLICAS}: {where}"
    for i in range(5):
        arrivals, _ = probe.flip(i)
        assert arrivals.complete, f"apply {i}: not on {arrivals.missing} within {APPLY_BOUND} s"
        assert {p for p, (_, r) in arrivals.at.items() if r != 0} == elsewhere, arrivals.at
        print(
            f"apply {i}: "
            + ", ".join(
                f"replica {r + 1} {arrivals.per_replica_ms(r)} ms ({arrivals.count(r)})"
                for r in range(REPLICAS)
                if arrivals.count(r)
            )
        )


def test_killing_a_replica_under_load_fails_no_request(replicated_mesh: E2EMesh) -> None:
    mesh = replicated_mesh
    proxies = {f"{p['name']}.{p['namespace']}" for p in mesh.pods()}
    status, _ = http_get(mesh.ingress + "/productpage")
    assert status == 200

    def placed() -> dict[str, int] | None:
        placement = _placement(mesh)
        return placement if proxies <= placement.keys() else None

    placement = poll(placed, "every proxy in sync with a replica", deadline=60)
    counts = {r: sum(1 for v in placement.values() if v == r) for r in range(REPLICAS)}
    print(f"\nproxies per replica: {counts}")
    victim = max(range(1, REPLICAS), key=lambda r: counts[r])
    moved = {p for p, r in placement.items() if r == victim and p in proxies}
    assert moved, f"no proxy on replicas 2..{REPLICAS}: {counts}"

    results: list[int | str] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            code, _ = http_get(mesh.ingress + "/productpage", timeout=10)
        except OSError as exc:
            code = -1
            outcome: int | str = f"{type(exc).__name__}: {exc}"
        else:
            outcome = code
        with lock:
            results.append(outcome)

    threads: list[threading.Thread] = []

    def load() -> None:
        begin = time.monotonic()
        for i in range(int(RATE * LOAD_SECONDS)):
            time.sleep(max(0.0, begin + i / RATE - time.monotonic()))
            thread = threading.Thread(target=one)
            thread.start()
            threads.append(thread)

    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(2.0)  # the load is running by then
    os.kill(_replica_pid(mesh, victim), signal.SIGKILL)
    killed_at = time.monotonic()

    def back() -> float | None:
        placement = _placement(mesh)
        if not moved <= placement.keys():
            return None
        return time.monotonic() - killed_at

    reconnect = poll(back, "the killed replica's proxies in sync again", deadline=60, interval=0.1)
    loader.join()
    for thread in threads:
        thread.join(timeout=30)
    failed = [r for r in results if r != 200]
    print(
        f"killed replica {victim + 1} holding {len(moved)} proxies: all in sync again "
        f"{reconnect:.2f}s later; "
        f"{len(results)} requests, {len(failed)} failed"
    )
    assert len(results) == RATE * LOAD_SECONDS
    assert not failed, failed[:10]
    assert reconnect <= RECONNECT_BOUND

    # An apply through replica 1's API reaches proxies wherever they are now.
    mesh.cli(
        "apply",
        "-f",
        str(NETWORKING / "destination-rule-all.yaml"),
        "-f",
        str(NETWORKING / "virtual-service-reviews-v3.yaml"),
    )
    mesh.converge({"v3"})
    assert set(mesh.versions(20)) == {"v3"}


def test_replicas_share_the_mesh_root(replicated_mesh: E2EMesh) -> None:
    mesh = replicated_mesh
    ca = mesh.state_dir / "ca"
    assert (ca / "root-key.pem").stat().st_mode & 0o777 == 0o600
    roots = [p for p in ca.iterdir() if p.name.endswith("cert.pem")]
    assert [p.name for p in roots] == ["root-cert.pem"]
    # Every replica's syncz lists verified SPIFFE identities from that one root.
    identities = {row["identity"] for r in range(REPLICAS) for row in _syncz(mesh, r)}
    assert identities and all(i.startswith("spiffe://cluster.local/ns/") for i in identities)
