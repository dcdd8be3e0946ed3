"""A second host joins the mesh: ``pilotfish join`` in a network namespace of its own.

Bookinfo runs with ``pilotfish up`` (transparent mode, mTLS). The "host" is a
network namespace with its own address on the mesh's bridge (outside the
pods' allocations), running ``pilotfish join`` for the WorkloadGroup
``ratings-vm`` and a small ratings app that gives one star and logs the
client certificate its sidecar saw. Checked: the WorkloadEntry appears; the
mesh's reviews get ratings from the joined app over mTLS (the app sees the
caller's SPIFFE id in ``x-forwarded-client-cert``); the joined workload
reaches a mesh service through its sidecar over mTLS; a second join with the
same token is refused; after the joined process stops, its entry is gone
after the grace period. The namespace, its veth and every process are
removed also when an assertion fails.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2ekit import PILOTFISH, SAMPLES, E2EMesh, down_leaves_nothing, free_port, poll, require_root

from lanes import LANE, lane_address, lane_bridge, lane_cidr

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HERE = Path(__file__).resolve().parent
GROUP = HERE.parents[0] / "testdata" / "api" / "bookinfo" / "workload-group.yaml"
GRACE = 3.0
HOST_NS = f"pfjoinhost{LANE}"
VETH = f"pfjh{LANE}"
HOST_IP = lane_address("198.18.247.250")
GATEWAY = lane_address("198.18.247.1")
ENTRY = "ratings-vm-" + HOST_IP.replace(".", "-")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)


def _in_host(*argv: str) -> list[str]:
    return ["ip", "netns", "exec", HOST_NS, *argv]


def _remove_host() -> None:
    subprocess.run(["ip", "netns", "del", HOST_NS], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", f"{VETH}a"], capture_output=True, check=False)


def _add_host(bridge: str) -> None:
    """The host: a namespace with HOST_IP on the mesh's bridge, default route to it."""
    _remove_host()
    _run("ip", "netns", "add", HOST_NS)
    _run("ip", "link", "add", f"{VETH}a", "type", "veth", "peer", "name", f"{VETH}b")
    _run("ip", "link", "set", f"{VETH}b", "netns", HOST_NS)
    _run("ip", "link", "set", f"{VETH}a", "master", bridge, "up")
    _run(*_in_host("ip", "link", "set", "lo", "up"))
    _run(*_in_host("ip", "addr", "add", f"{HOST_IP}/24", "dev", f"{VETH}b"))
    _run(*_in_host("ip", "link", "set", f"{VETH}b", "up"))
    _run(*_in_host("ip", "route", "add", "default", "via", GATEWAY))


@dataclass
class Joined:
    mesh: E2EMesh
    work: Path
    join_file: Path
    app_log: Path
    procs: list[subprocess.Popen[bytes]]
    app_port: int

    def join(self, name: str) -> subprocess.Popen[bytes]:
        argv = [
            "join",
            "--control-plane",
            f"{GATEWAY}:{self.mesh.xds_mtls_port}",
            "--token",
            str(self.join_file),
            "--address",
            HOST_IP,
            "--app-port",
            f"9080={self.app_port}",
            "--state-dir",
            str(self.work / f"{name}-state"),
            "--agent-arg=--concurrency=1",
        ]
        with (self.work / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                _in_host(*PILOTFISH, *argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text()

    def entry(self) -> dict[str, object] | None:
        got = self.mesh.cli("get", "workloadentries", ENTRY, "-o", "json", check=False)
        return json.loads(got.stdout) if got.returncode == 0 else None

    def envoy_stats(self, pattern: str) -> dict[str, int]:
        """Counters of the joined sidecar's Envoy matching ``pattern`` (a regex)."""
        url = f"http://127.0.0.1:15000/stats?filter={pattern}"
        out = _run(*_in_host("curl", "-s", url)).stdout
        pairs = (line.partition(": ") for line in out.splitlines())
        return {k: int(v) for k, _, v in pairs if v.isdigit()}


def _disconnected_at(entry: dict[str, Any] | None) -> str | None:
    annotations = (entry or {}).get("metadata", {}).get("annotations", {})
    return annotations.get("istio.io/disconnectedAt")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Joined]:
    require_root()
    tmp = tmp_path_factory.mktemp("join")
    bridge = lane_bridge("pfe2j")
    mesh = E2EMesh(tmp / "state", "transparent", free_port(), free_port(), free_port(), bridge)
    mesh.pod_cidr, mesh.service_cidr = lane_cidr("198.18.247.0/24"), lane_cidr("198.19.247.0/24")
    mesh.xds_mtls_port = free_port()
    mesh.secure_port = mesh.xds_mtls_port + 1  # where `join` looks for the CA
    work = tmp / "host"
    work.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    os.environ["PILOT_WORKLOAD_ENTRY_GRACE_PERIOD"] = f"{GRACE:g}s"  # inherited by `up`
    try:
        mesh.up(SAMPLES / "bookinfo.yaml", SAMPLES / "networking" / "bookinfo-gateway.yaml")
        mesh.cli("apply", "-f", str(GROUP))
        _add_host(bridge)
        join_file = work / "join.token"
        create = [*PILOTFISH, "join-token", "create", "-n", "default", "--workload-group"]
        _run(
            *create,
            "ratings-vm",
            "--ttl",
            "10m",
            "-o",
            str(join_file),
            "--control-plane",
            mesh.control_plane,
            "--token-file",
            str(mesh.token_file),
        )
        state = Joined(mesh, work, join_file, work / "app-requests.log", procs, free_port())
        app = [
            sys.executable,
            str(HERE / "joined_ratings.py"),
            str(state.app_port),
            str(state.app_log),
        ]
        with (work / "app.log").open("ab") as out:
            procs.append(
                subprocess.Popen(_in_host(*app), stdout=out, stderr=out, start_new_session=True)
            )
        yield state
    finally:
        os.environ.pop("PILOT_WORKLOAD_ENTRY_GRACE_PERIOD", None)
        for proc in reversed(procs):
            _stop(proc)
        _remove_host()
        down_leaves_nothing(mesh, bridge)


def test_a_joined_host_serves_the_mesh_and_leaves_clean(joined: Joined) -> None:
    first = joined.join("join")
    poll(
        lambda: first.poll() is None and joined.entry(),
        "the joined workload's entry",
        60,
        interval=0.5,
        context=lambda: joined.log("join"),
    )
    entry = joined.entry()
    assert entry is not None
    spec = entry["spec"]
    assert isinstance(spec, dict) and spec["address"] == HOST_IP
    assert spec["labels"]["version"] == "v4" and spec["serviceAccount"] == "bookinfo-ratings"

    # The mesh's reviews (v2, v3) get some of their ratings from the joined host.
    def joined_stars() -> bool:
        reviews = joined.mesh.reviews().get("reviews") or []
        return any((r.get("rating") or {}).get("stars") == 1 for r in reviews)

    poll(joined_stars, "a rating from the joined host through the ingress", 60, interval=0.2)
    callers = set(joined.app_log.read_text().splitlines())
    assert any("URI=spiffe://cluster.local/ns/default/sa/bookinfo-reviews" in c for c in callers)
    assert "" not in callers  # every request came over mTLS
    inbound = joined.envoy_stats(r"^listener\..*ssl\.handshake$")
    assert sum(inbound.values()) > 0, inbound

    # The joined workload reaches a mesh service through its sidecar, over mTLS.
    url = "http://details.default.svc.cluster.local:9080/details/0"
    out = _run(*_in_host("curl", "-s", "-x", f"http://{HOST_IP}:15001", url)).stdout
    assert json.loads(out)["id"] == 0
    outbound = joined.envoy_stats(r"^cluster\.outbound\|9080\|\|details\..*ssl\.handshake$")
    assert sum(outbound.values()) > 0, outbound

    # The joined process stops: its entry goes, after the grace period.
    _stop(first)
    assert first.returncode == 0, joined.log("join")
    # Kept through the grace period, marked disconnected. The period runs from the
    # control plane's stamp: it may hear the stream end after the process has exited.
    stamp = poll(
        lambda: _disconnected_at(joined.entry()), "the entry marked disconnected", 30, interval=0.1
    )
    since = datetime.datetime.fromisoformat(stamp).timestamp()
    # The same token again, on the same host: the CA refuses it, join says why.
    second = joined.join("again")
    assert second.wait(60) != 0
    assert "join token already used" in joined.log("again")
    poll(lambda: joined.entry() is None, "the entry to be removed", 60, interval=0.2)
    assert time.time() - since >= GRACE - 0.05
    assert not (joined.work / "join-state").exists()
