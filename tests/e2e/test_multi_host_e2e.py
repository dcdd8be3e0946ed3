"""Three hosts: etcd and two control-plane replicas on host A, Bookinfo's pods split
across nodes B and C (``pilotfish up --control-plane``), one replica killed under load.

Each host is a network namespace with its own address on a test bridge in the
root namespace, running its own ``pilotfish`` (``hostkit``); the test routes
every host's pod range via that host, as a network admin would.

- Host A: ``pilotfish up --addons etcd --control-plane-replicas 2
  --listen-address A`` with Bookinfo's Services, its Gateway and
  VirtualService, and no pods; the ingress gateway runs there.
- Host B: productpage, details, ratings and reviews-v1; host C: reviews-v2 and
  reviews-v3 (Bookinfo's Workloads, split by this test from the sample).

Checked: every version of reviews answers through A's ingress; requests
between hosts are mTLS (inbound TLS handshakes on C's reviews and B's ratings
sidecars, whose only callers are on the other node; each node proxy's xDS
identity is its pod's SPIFFE id, from its join token); B's proxies are
steered to replica 2 (replica 1's xDS port refused from B while B starts),
replica 2 is SIGKILLed while a client sends 20 requests a second for 10 s
through the ingress: no request fails, every B proxy is in sync with replica
1 within a bound (the time is printed); an apply after the kill reaches the
proxies of B and C. Teardown: every node's ``down`` removes its
WorkloadEntries, then A's; nothing is left (netns, veths, bridges, processes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.replicas_sync import acked_routes, in_sync
from e2ekit import (
    NETWORKING,
    SAMPLES,
    E2EMesh,
    PortPicker,
    down_leaves_nothing,
    free_port,
    http_get,
    poll,
    require_root,
)
from hostkit import Host, TestBridge, on_host

from etcdkit import etcd_missing
from lanes import LANE, lane_address, lane_bridge, lane_cidr
from pilotfish.runtime.control_plane_replicas import PORT_STEP
from pilotfish.runtime.network.transparent import netns_name
from pilotfish.runtime.process import read_pid_record

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

RATE = 20
LOAD_SECONDS = 10.0
RECONNECT_BOUND = 15.0
B_WORKLOADS = ("details-v1", "ratings-v1", "reviews-v1", "productpage-v1")
C_WORKLOADS = ("reviews-v2", "reviews-v3")
NODE_ANNOTATION = "pilotfish.io/node"


@dataclass
class ThreeHosts:
    a: E2EMesh
    b: E2EMesh
    c: E2EMesh
    hosts: dict[str, Host]
    api_url: str  # replica 1's API on host A's address (reached from the root namespace)

    def on(self, host: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return on_host(self.hosts[host].netns, fn, *args, **kwargs)

    def api(self, replica: int, path: str) -> Any:
        url = self.api_url.rsplit(":", 1)[0] + f":{self.a.cp_port + PORT_STEP * replica}"
        token = self.a.token_file.read_text().strip()
        request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=2) as resp:
            return json.loads(resp.read())

    def syncz(self, replica: int) -> list[dict[str, Any]]:
        try:
            return list(self.api(replica, "/debug/syncz"))
        except OSError:
            return []

    def node_pods(self, mesh: E2EMesh) -> set[str]:
        state = json.loads((mesh.state_dir / "state.json").read_text())
        return {f"{p['name']}.{p['namespace']}" for p in state["pods"].values()}

    def entries(self) -> list[dict[str, Any]]:
        return list(self.api(0, "/apis/networking.istio.io/v1/workloadentries")["items"])


def _placement(hosts: ThreeHosts) -> dict[str, tuple[int, dict[str, Any]]]:
    """proxy id -> (the replica it is in sync with, its syncz row)."""
    return {
        row["proxy_id"]: (replica, row)
        for replica in (0, 1)
        for row in hosts.syncz(replica)
        if in_sync(row)
    }


def _all_placed(hosts: ThreeHosts, proxies: set[str]) -> dict[str, tuple[int, dict[str, Any]]]:
    def placed() -> dict[str, tuple[int, dict[str, Any]]] | None:
        now = _placement(hosts)
        return now if proxies <= now.keys() else None

    return poll(placed, "every node proxy in sync with a replica", 60)


def _split_bookinfo(tmp: Path) -> tuple[Path, Path, Path]:
    """Bookinfo's Services (host A) and its Workloads for B and C, from the sample."""
    docs = [d for d in yaml.safe_load_all((SAMPLES / "bookinfo.yaml").read_text()) if d]
    out = []
    for name, keep in (
        ("services.yaml", lambda d: d["kind"] != "Workload"),
        ("host-b.yaml", lambda d: d["kind"] == "Workload" and d["metadata"]["name"] in B_WORKLOADS),
        ("host-c.yaml", lambda d: d["kind"] == "Workload" and d["metadata"]["name"] in C_WORKLOADS),
    ):
        path = tmp / name
        path.write_text(yaml.safe_dump_all([d for d in docs if keep(d)]))
        out.append(path)
    assert "kind: Workload" not in out[0].read_text()
    return out[0], out[1], out[2]


def _node(tmp: Path, name: str, host: Host, bridge: str, a: E2EMesh, urls: str) -> E2EMesh:
    mesh = E2EMesh(tmp / name, "transparent", free_port(), free_port(), free_port(), bridge)
    mesh.pod_cidr, mesh.service_cidr = host.pod_cidr, a.service_cidr
    node = ("--control-plane", urls, "--api-token-file", str(a.token_file))
    mesh.extra_up_args = (*node, "--node-name", name)
    return mesh


def _down_node(hosts: ThreeHosts, name: str, mesh: E2EMesh, bridge: str) -> None:
    hosts.on(name, down_leaves_nothing, mesh, bridge)
    mine = [
        e["metadata"]["name"]
        for e in hosts.entries()
        if (e["metadata"].get("annotations") or {}).get(NODE_ANNOTATION) == name
    ]
    assert mine == [], f"node {name} left WorkloadEntries {mine}"


@pytest.fixture(scope="module")
def three_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreeHosts]:
    require_root()
    if missing := etcd_missing():
        pytest.fail(f"host A runs the etcd addon, which needs Debian's etcd-server: {missing}")
    tmp = tmp_path_factory.mktemp("multihost")
    bridge = TestBridge(lane_bridge("pfmh"), lane_address("198.18.243.1"))
    hosts = {
        name: Host(f"pfmhost{name}{LANE}", f"pfmh{LANE}{name}", lane_address(ip), lane_cidr(cidr))
        for name, ip, cidr in (
            ("a", "198.18.243.2", "198.18.244.0/24"),
            ("b", "198.18.243.3", "198.18.245.0/24"),
            ("c", "198.18.243.4", "198.18.248.0/24"),
        )
    }
    bridges = {name: lane_bridge(f"pfm{name}") for name in hosts}
    services, host_b, host_c = _split_bookinfo(tmp)
    ports = PortPicker()  # replica 2 listens at replica 1's ports + PORT_STEP
    a = E2EMesh(
        tmp / "a",
        "transparent",
        ports.single(),
        ports.block(2, PORT_STEP),
        ports.block(2, PORT_STEP),
        bridges["a"],
        secure_port=ports.block(2, PORT_STEP),
        xds_mtls_port=ports.block(2, PORT_STEP),
    )
    a.pod_cidr, a.service_cidr = hosts["a"].pod_cidr, lane_cidr("198.19.243.0/24")
    a_ip = hosts["a"].address
    a.extra_up_args = ("--control-plane-replicas", "2", "--addons", "etcd")
    a.extra_up_args += ("--etcd-port", str(ports.single()), "--listen-address", a_ip)
    urls = f"http://{a_ip}:{a.cp_port},http://{a_ip}:{a.cp_port + PORT_STEP}"
    b = _node(tmp, "b", hosts["b"], bridges["b"], a, urls)
    c = _node(tmp, "c", hosts["c"], bridges["c"], a, urls)
    three = ThreeHosts(a, b, c, hosts, f"http://{a_ip}:{a.cp_port}")
    started: list[str] = []
    try:
        bridge.create()
        for host in hosts.values():
            host.create(bridge)
        for host in hosts.values():
            for other in hosts.values():
                if other is not host:
                    host.route_to(other)
        started.append("a")
        three.on("a", a.up, services, NETWORKING / "bookinfo-gateway.yaml")
        # B's proxies start on replica 2: replica 1's xDS port is refused from B meanwhile.
        steer = ["FORWARD", "-p", "tcp", "-d", a_ip, "--dport", str(a.xds_mtls_port)]
        steer += ["-j", "REJECT", "--reject-with", "tcp-reset"]
        hosts["b"].iptables("-I", *steer)
        started.append("b")
        three.on("b", b.up, host_b)
        hosts["b"].iptables("-D", *steer)
        started.append("c")
        three.on("c", c.up, host_c)
        yield three
    finally:
        try:
            for name, mesh in (("c", c), ("b", b)):
                if name in started:
                    _down_node(three, name, mesh, bridges[name])
        finally:
            if "a" in started:
                three.on("a", down_leaves_nothing, a, bridges["a"])
            for host in hosts.values():
                host.remove()
            bridge.remove()
            left = [x for host in hosts.values() for x in host.leftovers()]
            assert left == [], left


def _reviews(mesh: E2EMesh, n: int) -> set[str]:
    return {str(mesh.reviews().get("version")) for _ in range(n)}


def test_bookinfo_spans_the_nodes_over_mtls(three_hosts: ThreeHosts) -> None:
    hosts = three_hosts
    status, body = hosts.on("a", http_get, hosts.a.ingress + "/productpage")
    assert status == 200 and b"Book Details" in body
    seen: set[str] = set()

    def every_version() -> bool:
        seen.update(hosts.on("a", _reviews, hosts.a, 10))
        return seen >= {"v1", "v2", "v3"}

    poll(every_version, "reviews v1 (host B), v2 and v3 (host C) through A's ingress", 60)
    entries = {e["metadata"]["name"]: e for e in hosts.entries()}
    for node, workloads in (("b", B_WORKLOADS), ("c", C_WORKLOADS)):
        for workload in workloads:
            entry = entries[f"{workload}-0-{node}"]
            assert entry["metadata"]["annotations"][NODE_ANNOTATION] == node
            pod_net = hosts.hosts[node].pod_cidr.rsplit(".", 1)[0] + "."
            assert entry["spec"]["address"].startswith(pod_net)
    # Callers of C's reviews are on B (productpage) and of B's ratings on C (v2, v3).
    for node, mesh, pod in (("c", hosts.c, "reviews-v2-0"), ("b", hosts.b, "ratings-v1-0")):
        ns = netns_name(pod, f"{mesh.bridge}-")
        handshakes = _inbound_handshakes(ns)
        assert handshakes > 0, f"no TLS handshake on {pod}'s inbound listeners (host {node})"
    proxies = hosts.node_pods(hosts.b) | hosts.node_pods(hosts.c)
    identities = {p: row["identity"] for p, (_, row) in _all_placed(hosts, proxies).items()}
    for proxy in proxies:
        account = "bookinfo-" + proxy.split("-", 1)[0]
        assert identities[proxy] == f"spiffe://cluster.local/ns/default/sa/{account}"


def _inbound_handshakes(netns: str) -> int:
    url = "http://127.0.0.1:15000/stats?filter=" + r"^listener\..*ssl\.handshake$"
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "curl", "-s", url],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    pairs = (line.partition(": ") for line in out.splitlines())
    return sum(int(v) for _, _, v in pairs if v.isdigit())


def _replica_pid(mesh: E2EMesh, replica: int) -> int:
    [process] = read_pid_record(
        mesh.state_dir / "pods" / f"control-plane-{replica + 1}" / "pids.json"
    ).values()
    return process.pid


def _load(hosts: ThreeHosts, results: list[int | str], threads: list[threading.Thread]) -> None:
    """RATE requests a second for LOAD_SECONDS through A's ingress (run on host A)."""
    lock = threading.Lock()

    def one() -> None:
        try:
            code: int | str = http_get(hosts.a.ingress + "/productpage", timeout=10)[0]
        except OSError as exc:
            code = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append(code)

    begin = time.monotonic()
    for i in range(int(RATE * LOAD_SECONDS)):
        time.sleep(max(0.0, begin + i / RATE - time.monotonic()))
        thread = threading.Thread(target=one)  # created on host A: it stays there
        thread.start()
        threads.append(thread)


def test_killing_the_replica_of_bs_proxies_under_load_fails_nothing(
    three_hosts: ThreeHosts,
) -> None:
    hosts = three_hosts
    b_proxies = hosts.node_pods(hosts.b)
    c_proxies = hosts.node_pods(hosts.c)
    placed = _all_placed(hosts, b_proxies | c_proxies)
    on_two = {p for p in b_proxies if placed[p][0] == 1}
    assert on_two == b_proxies, f"B's proxies were steered to replica 2: {placed}"
    before = acked_routes(row for _, row in placed.values())

    results: list[int | str] = []
    threads: list[threading.Thread] = []
    loader = threading.Thread(target=hosts.on, args=("a", _load, hosts, results, threads))
    loader.start()
    time.sleep(2.0)  # the load is running by then
    os.kill(_replica_pid(hosts.a, 1), signal.SIGKILL)
    killed = time.monotonic()

    def back() -> float | None:
        now = _placement(hosts)
        if all(now.get(p, (1, {}))[0] == 0 for p in b_proxies):
            return time.monotonic() - killed
        return None

    reconnect = poll(back, "B's proxies in sync with replica 1", 60, interval=0.05)
    loader.join()
    for thread in threads:
        thread.join(timeout=30)
    failed = [r for r in results if r != 200]
    print(
        f"\nkilled replica 2 holding B's {len(b_proxies)} proxies: all in sync with "
        f"replica 1 {reconnect:.2f}s later; {len(results)} requests, {len(failed)} failed"
    )
    assert len(results) == RATE * LOAD_SECONDS
    assert not failed, failed[:10]
    assert reconnect <= RECONNECT_BOUND

    # An apply after the kill (through replica 1) reaches the proxies of B and C.
    for path in ("destination-rule-all.yaml", "virtual-service-reviews-v3.yaml"):
        hosts.on("a", hosts.a.cli, "apply", "-f", str(NETWORKING / path))

    def reached() -> dict[str, str] | None:
        now = _placement(hosts)
        versions = acked_routes(now[p][1] for p in b_proxies | c_proxies if p in now)
        moved = {p for p, v in versions.items() if v != before.get(p)}
        return versions if moved == b_proxies | c_proxies else None

    poll(reached, "the apply's routes ACKed by every proxy of B and C", 30)
    hosts.on("a", hosts.a.converge, {"v3"})
