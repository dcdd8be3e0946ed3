"""Transparent pod networking on the real kernel: namespaces, bridge, capture, names.

Every object gets a name derived from this process's pid (bridge ``pft<n>``,
netns ``pft<n>-*``) and a /24 inside 198.19.20-199 that a running mesh (and
the e2e meshes of either test lane, tests/lanes.py) does not use. Each pod
also gets a test-only egress guard (filter rules that reject anything sent
to an address outside loopback and the test's /24), so even a broken capture
rule can never send a packet off the machine.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pilotfish.runtime.network import (
    PROXY_UID,
    CaptureConfig,
    HostResources,
    PodAddress,
    ServiceName,
    TransparentNetwork,
    cleanup_leftovers,
    find_leftovers,
    is_root,
    transparent_supported,
    veth_name,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(not is_root(), reason="needs root: network namespaces and iptables"),
]

N = os.getpid() % 1000
_BASE = 20 + (os.getpid() % 45) * 4  # four adjacent /24s per test run, all below 198.19.200
VIP = "198.19.0.10"  # a service VIP; never on any interface, only ever captured
DEADLINE = 10.0

# A TCP server for helper processes. argv: port, mode ("origdst" answers with
# the connection's original destination read with SO_ORIGINAL_DST, anything
# else answers with that text). Prints "ready" once listening.
SERVER = r"""
import socket, struct, sys
port, mode = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(16)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    with conn:
        if mode == "origdst":
            raw = conn.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
            dport, = struct.unpack("!H", raw[2:4])
            reply = f"{socket.inet_ntoa(raw[4:8])}:{dport}"
        else:
            reply = mode
        conn.sendall(reply.encode())
"""

# Connect, print what the server sent. argv: host, port.
CLIENT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    chunks = []
    while data := s.recv(4096):
        chunks.append(data)
print(b"".join(chunks).decode(), end="")
"""

AS_PROXY = ["setpriv", "--reuid", str(PROXY_UID), "--regid", str(PROXY_UID), "--clear-groups"]


@dataclass(frozen=True)
class Names:
    """Names of one test network, unique to this process."""

    bridge: str
    netns_prefix: str
    veth_prefix: str

    @classmethod
    def for_prefix(cls, prefix: str) -> Names:
        return cls(f"{prefix}{N}", f"{prefix}{N}-", f"{prefix}v{N}")

    def network(self, cidr: str) -> TransparentNetwork:
        return TransparentNetwork(
            self.bridge, cidr, netns_prefix=self.netns_prefix, veth_prefix=self.veth_prefix
        )

    def leftovers(self) -> HostResources:
        return find_leftovers(self.bridge, self.netns_prefix, veth_prefix=self.veth_prefix)


def _is_empty(found: HostResources) -> bool:
    return found == HostResources()


def _guard_egress(pod: PodAddress, cidr: str) -> None:
    """Test-only: reject anything that would leave the pod for a non-test address.

    It matches destinations, not the output device: the filter table sees a
    REDIRECTed packet's new destination (127.0.0.1) but its original device.
    """
    for rule in (
        ["-A", "OUTPUT", "-d", "127.0.0.0/8", "-j", "ACCEPT"],
        ["-A", "OUTPUT", "-d", cidr, "-j", "ACCEPT"],
        ["-A", "OUTPUT", "-j", "REJECT"],
    ):
        subprocess.run([*pod.exec_prefix, "iptables", *rule], check=True, capture_output=True)


@dataclass
class Processes:
    running: list[subprocess.Popen[str]] = field(default_factory=list)

    def serve(self, pod: PodAddress, port: int, mode: str, *, as_proxy: bool = False) -> None:
        """Start SERVER inside ``pod`` and wait until it listens."""
        argv = [*pod.exec_prefix, *(AS_PROXY if as_proxy else [])]
        argv += [sys.executable, "-c", SERVER, str(port), mode]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.running.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=DEADLINE)
            raise AssertionError(f"server on {pod.pod}:{port} did not start: {err}")

    def stop_all(self) -> None:
        for proc in self.running:
            proc.kill()
            proc.communicate(timeout=DEADLINE)
        self.running.clear()


def _call(pod: PodAddress, host: str, port: int, *, as_proxy: bool = False) -> str:
    argv = [*pod.exec_prefix, *(AS_PROXY if as_proxy else [])]
    argv += [sys.executable, "-c", CLIENT, host, str(port)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, f"client in {pod.pod} -> {host}:{port} failed: {done.stderr}"
    return done.stdout


def _call_from_host(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=5) as sock:
        chunks = []
        while data := sock.recv(4096):
            chunks.append(data)
    return b"".join(chunks).decode()


@pytest.fixture(scope="module")
def supported() -> None:
    ok, reason = transparent_supported()
    if not ok:
        pytest.skip(f"transparent networking unavailable: {reason}")
    # setpriv (util-linux) runs helpers as the proxy uid; getent checks names.
    for tool in ("setpriv", "getent"):
        if shutil.which(tool) is None:
            pytest.skip(f"'{tool}' not found (util-linux / libc-bin)")


@dataclass
class Mesh:
    net: TransparentNetwork
    cidr: str
    a: PodAddress  # capture, namespace "default"
    b: PodAddress  # capture, namespace "other"
    c: PodAddress  # no capture
    procs: Processes


@pytest.fixture(scope="module")
def mesh(supported: None) -> Iterator[Mesh]:
    names = Names.for_prefix("pft")
    cidr = f"198.19.{_BASE}.0/24"
    net = names.network(cidr)
    procs = Processes()
    try:
        net.setup()
        a = net.create_pod("a", CaptureConfig(), namespace="default")
        b = net.create_pod("b", CaptureConfig(), namespace="other")
        c = net.create_pod("c", None)
        for pod in (a, b, c):
            _guard_egress(pod, cidr)
        # Pod A's "sidecar": reports where app traffic was going.
        procs.serve(a, 15001, "origdst", as_proxy=True)
        # Pod B's "sidecar" inbound listener, and a port capture must skip.
        procs.serve(b, 15006, "origdst", as_proxy=True)
        procs.serve(b, 15021, "plain-15021")
        # Pod C has no capture: a plain app server.
        procs.serve(c, 8000, "plain-8000")
        yield Mesh(net, cidr, a, b, c, procs)
    finally:
        try:
            procs.stop_all()
        finally:
            net.teardown()
            cleanup_leftovers(names.leftovers())


def test_outbound_app_traffic_is_captured_with_its_original_destination(mesh: Mesh) -> None:
    assert _call(mesh.a, VIP, 9080) == f"{VIP}:9080"
    # A pod address is captured too: the app never reaches C directly.
    assert _call(mesh.a, mesh.c.ip, 8000) == f"{mesh.c.ip}:8000"


def test_inbound_traffic_is_captured_except_excluded_ports(mesh: Mesh) -> None:
    assert _call_from_host(mesh.b.ip, 9080) == f"{mesh.b.ip}:9080"
    assert _call_from_host(mesh.b.ip, 15021) == "plain-15021"


def test_proxy_uid_traffic_is_not_captured(mesh: Mesh) -> None:
    assert _call(mesh.a, mesh.c.ip, 8000, as_proxy=True) == "plain-8000"


def test_proxy_calling_its_own_pod_comes_back_through_inbound(mesh: Mesh) -> None:
    # Istio's special case: the sidecar dialling its own pod address (over lo)
    # is sent to the inbound listener, so inbound policy applies.
    assert _call(mesh.b, mesh.b.ip, 9080, as_proxy=True) == f"{mesh.b.ip}:9080"


def test_pod_without_capture_is_reachable_directly(mesh: Mesh) -> None:
    assert _call_from_host(mesh.c.ip, 8000) == "plain-8000"
    rules = subprocess.run(
        [*mesh.c.exec_prefix, "iptables", "-t", "nat", "-S"], capture_output=True, text=True
    ).stdout
    assert "PF_" not in rules


def _getent(pod: PodAddress, name: str) -> subprocess.CompletedProcess[str]:
    argv = [*pod.exec_prefix, "getent", "hosts", name]
    return subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE)


def test_service_names_resolve_by_namespace(mesh: Mesh) -> None:
    reviews = ServiceName("reviews.default.svc.cluster.local", "default", VIP)
    pods = {"a": "default", "b": "other", "c": "default"}
    mesh.net.update_names([reviews], pods)
    assert _getent(mesh.a, "reviews").stdout.split()[:1] == [VIP]
    assert _getent(mesh.b, "reviews").returncode != 0  # other namespace: no bare name
    assert _getent(mesh.b, "reviews.default").stdout.split()[:1] == [VIP]
    assert _getent(mesh.b, "reviews.default.svc.cluster.local").stdout.split()[:1] == [VIP]
    # A process started before an update sees it: the files change in place.
    show_hosts = "import sys; sys.stdin.readline(); print(open('/etc/hosts').read())"
    watcher = subprocess.Popen(
        [*mesh.a.exec_prefix, sys.executable, "-c", show_hosts],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ratings = ServiceName("ratings.default.svc.cluster.local", "default", "198.19.0.11")
        mesh.net.update_names([reviews, ratings], pods)
        out, _ = watcher.communicate("go\n", timeout=DEADLINE)
    finally:
        watcher.kill()
    assert "198.19.0.11\tratings.default.svc.cluster.local" in out
    resolv = Path("/etc/netns", mesh.b.netns or "", "resolv.conf").read_text()
    assert "search other.svc.cluster.local svc.cluster.local cluster.local" in resolv


def test_teardown_leaves_nothing(supported: None) -> None:
    names = Names.for_prefix("pfu")
    cidr = f"198.19.{_BASE + 1}.0/24"
    net = names.network(cidr)
    try:
        net.setup()
        net.setup()  # idempotent
        pods = [net.create_pod(p, CaptureConfig(), namespace="default") for p in ("x", "y")]
        net.update_names([ServiceName("r.default.svc.cluster.local", "default", VIP)], {"x": "d"})
        made = net.resources()
        assert made.bridge == names.bridge
        assert sorted(made.netns) == sorted(p.netns or "" for p in pods)
        assert len(made.host_veths) == 2
        assert names.leftovers().netns == sorted(made.netns)
        net.delete_pod("x")
        net.delete_pod("x")  # idempotent
        assert net.resources().netns == [pods[1].netns]
        net.teardown()
        net.teardown()  # idempotent
        assert _is_empty(names.leftovers()), names.leftovers()
        assert not list(Path("/etc/netns").glob(f"{names.netns_prefix}*"))
        rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
        assert names.bridge not in rules
    finally:
        cleanup_leftovers(names.leftovers())


def test_leftovers_of_a_crashed_run_are_found_and_removed(supported: None) -> None:
    names = Names.for_prefix("pfw")
    cidr = f"198.19.{_BASE + 2}.0/24"
    try:
        crashed = names.network(cidr)
        crashed.setup()
        crashed.create_pod("p1", CaptureConfig())
        crashed.create_pod("p2", None)
        expected = crashed.resources()
        del crashed  # the process "died": nothing was torn down
        found = names.leftovers()
        assert found.bridge == expected.bridge
        assert found.netns == sorted(expected.netns)
        assert found.host_veths == sorted(expected.host_veths)
        assert found.files == sorted(expected.files)
        assert len(found.iptables_rules) == len(expected.iptables_rules)
        cleanup_leftovers(found)
        assert _is_empty(names.leftovers())
        # A new run on the same names after cleanup starts clean and works.
        again = names.network(cidr)
        again.setup()
        assert again.create_pod("p1", None).ip == expected_first_ip(cidr)
        again.teardown()
        assert _is_empty(names.leftovers())
    finally:
        cleanup_leftovers(names.leftovers())


def test_another_meshs_veth_is_no_leftover_even_before_it_is_on_its_bridge(
    supported: None,
) -> None:
    """Two meshes share the veth prefix. While the other one creates a pod its veth
    hangs off no bridge for a moment; it must not look like ours (our ``up`` or
    ``down`` would delete it), while our own veth off its bridge still does."""
    ours = Names.for_prefix("pfo")
    theirs = Names(f"pfq{N}", f"pfq{N}-", ours.veth_prefix)
    their_ns = f"{theirs.netns_prefix}half"
    their_veth = veth_name(their_ns, theirs.veth_prefix)
    net = ours.network(f"198.19.{_BASE + 3}.0/24")
    try:
        net.setup()
        pod = net.create_pod("p", None)
        subprocess.run(["ip", "netns", "add", their_ns], check=True)
        peer = ["peer", "name", "eth0", "netns", their_ns]
        subprocess.run(["ip", "link", "add", their_veth, "type", "veth", *peer], check=True)
        our_veth = veth_name(pod.netns or "", ours.veth_prefix)
        assert ours.leftovers().host_veths == [our_veth]
        subprocess.run(["ip", "link", "set", our_veth, "nomaster"], check=True)
        assert ours.leftovers().host_veths == [our_veth]
        assert theirs.leftovers().host_veths == [their_veth]
        net.teardown()
        assert _is_empty(ours.leftovers()), ours.leftovers()
        assert theirs.leftovers().host_veths == [their_veth]
    finally:
        cleanup_leftovers(ours.leftovers())
        cleanup_leftovers(theirs.leftovers())
    assert _is_empty(theirs.leftovers()), theirs.leftovers()


def expected_first_ip(cidr: str) -> str:
    return cidr.replace(".0/24", ".2")
