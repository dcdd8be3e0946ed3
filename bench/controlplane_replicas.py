"""Cross-replica apply latency: an apply on replica 1 reaching the proxies of replica 2.

Theory of operation. One real ``pilotfish up --detach`` of Bookinfo in explicit
mode (loopback, mTLS on) with the etcd addon (``--addons etcd``: the
configuration lives in a local etcd, as a user runs it) and
``--control-plane-replicas 2``. Both replicas watch etcd; every proxy is given
both replicas' addresses and Envoy's round robin puts it on one of them. When
replica 2 holds none of the proxies the flip reaches, the mesh is brought down
and up again (at most ``placement_attempts`` times), so the cross-replica
number is never empty.

The change is a VirtualService weight flip on reviews (v1/v2 90/10 <-> 10/90),
applied with ``pilotfish apply`` against replica 1's API, as a user would.
The signal is each replica's ``/debug/syncz``: the RDS version each proxy
ACKed (``bench.replicas_sync``). Envoy ACKs a response after applying it, so an
ACK of the new version is the proxy holding the new routes; one request per
replica covers all of its proxies and says which replica each is on, where
polling every Envoy's config dump at 10 ms would load the two cores it
measures. Both replicas are polled every ``poll_s``; per apply, the number is
the time from ``apply`` returning to the poll that showed the last proxy of that
replica on the new version (bounded by ``deadline_s``; an apply that does not
arrive is counted, never waited on for ever). Wall time is reported, never a
failure.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.controlplane_scale import BenchmarkError
from bench.dataplane_modes_base import BRIDGE
from bench.dataplane_modes_mesh import Mesh
from bench.replicas_sync import FlipProbe, latency_summary, placement
from pilotfish.runtime.ports import free_port

__all__ = ["FULL", "QUICK", "ReplicasParams", "replicas_table", "run_replicas"]

Log = Callable[[str], None]
REPO = Path(__file__).resolve().parent.parent
BOOKINFO = REPO / "samples" / "bookinfo"
EXPLICIT_CIDR = "127.81.253.0/24"
POD_CIDR = "198.18.253.0/24"
SERVICE_CIDR = "198.19.253.0/24"
REPLICAS = 2
PORT_STEP = 100  # replica k's ports: replica 1's + 100 * (k - 1)


@dataclass(frozen=True, slots=True)
class ReplicasParams:
    applies: int
    poll_s: float = 0.01
    deadline_s: float = 30.0  # per apply, for every affected proxy to ACK
    up_timeout_s: float = 300.0
    placement_attempts: int = 3


QUICK = ReplicasParams(applies=10)
FULL = ReplicasParams(applies=40)


class _Mesh(Mesh):
    """The data-plane modes benchmark's mesh (its ``cli``, and ``down`` with the leftover
    check), brought up in explicit mode with the etcd addon and two replicas."""

    def __init__(self, work: Path, log: Log) -> None:
        super().__init__(work, "replicas", log)
        self.etcd_port = free_port()

    def _run(self, *args: str, timeout: float = 120) -> None:
        done = self.cli(*args, timeout=timeout)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-1500:]
            raise BenchmarkError(f"pilotfish {args[0]} failed ({done.returncode}): {tail}")

    def apply_file(self, path: Path) -> None:
        """``pilotfish apply -f`` against replica 1's API, as a user would."""
        token = str(self.state_dir / "api-token")
        self._run("apply", "-f", str(path), "--control-plane", self._api(0), "--token-file", token)

    def _api(self, replica: int) -> str:
        return f"http://127.0.0.1:{self.cp_port + PORT_STEP * replica}"

    def up_replicas(self, timeout: float) -> None:
        options: dict[str, object] = {
            "--mode": "explicit",
            "--addons": "etcd",
            "--control-plane-replicas": REPLICAS,
            "--bridge": BRIDGE,
            "--pod-cidr": POD_CIDR,
            "--service-cidr": SERVICE_CIDR,
            "--explicit-cidr": EXPLICIT_CIDR,
            "--ingress-port": self.ingress_port,
            "--control-plane-port": self.cp_port,
            "--xds-port": self.xds_port,
            "--secure-port": self.secure_port,
            "--xds-mtls-port": self.xds_mtls_port,
            "--etcd-port": self.etcd_port,
        }
        manifests = (BOOKINFO / "bookinfo.yaml", BOOKINFO / "networking" / "bookinfo-gateway.yaml")
        argv = [str(m) for m in manifests] + [str(x) for kv in options.items() for x in kv]
        self._run("up", *argv, "--detach", timeout=timeout)

    def get(self, replica: int, path: str) -> Any:
        token = (self.state_dir / "api-token").read_text().strip()
        request = urllib.request.Request(
            self._api(replica) + path, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read())


@contextlib.contextmanager
def _mesh_up(work: Path, p: ReplicasParams, log: Log, problems: list[str]) -> Iterator[_Mesh]:
    mesh = _Mesh(work, log)
    try:
        started = time.monotonic()
        mesh.up_replicas(p.up_timeout_s)
        log(f"mesh up in {time.monotonic() - started:.1f} s")
        yield mesh
    finally:
        problems += mesh.down()


def _measure(mesh: _Mesh, work: Path, p: ReplicasParams, log: Log) -> dict[str, Any] | None:
    """The timed applies on a mesh; None when replica 2 holds no proxy the flip reaches."""
    mesh.apply_file(BOOKINFO / "networking" / "destination-rule-all.yaml")
    probe = FlipProbe(
        mesh.get,
        mesh.apply_file,
        REPLICAS,
        work,
        poll_s=p.poll_s,
        deadline_s=p.deadline_s,
    )
    try:
        reached = probe.learn()
    except TimeoutError as exc:
        raise BenchmarkError(str(exc)) from None
    where = placement(probe.syncz())
    counts = [sum(1 for r in where.values() if r == k) for k in range(REPLICAS)]
    affected = [sum(1 for x in reached if where.get(x) == k) for k in range(REPLICAS)]
    log(f"proxies per replica {counts}, reached by the flip {affected}")
    if affected[1] == 0:
        return None
    cross: list[float | None] = []
    same: list[float | None] = []
    apply_ms: list[float] = []
    late: list[dict[str, Any]] = []
    moved = 0
    for i in range(p.applies):
        arrivals, took = probe.flip(i)
        apply_ms.append(took)
        if not arrivals.complete:
            late.append({"apply": i, "missing": arrivals.missing})
        moved += sum(1 for x, (_, r) in arrivals.at.items() if where.get(x) != r)
        cross.append(arrivals.per_replica_ms(1))
        same.append(arrivals.per_replica_ms(0))
    return {
        "applies": p.applies,
        "proxies": counts,
        "replica2_proxies": affected[1],
        "replica1_proxies": affected[0],
        "unaffected_proxies": len(where) - len(reached),
        "cross_replica_ms": latency_summary(cross),
        "same_replica_ms": latency_summary(same),
        "apply_cli_ms": latency_summary(apply_ms),
        "not_arrived": late,
        "moved_between_replicas": moved,
    }


def run_replicas(p: ReplicasParams, log: Log) -> dict[str, Any]:
    """The benchmark; an ``error`` key when it could not run (never for slow numbers)."""
    if not Path("/usr/bin/etcd").exists():
        return {"error": "etcd is not installed (Debian's etcd-server)"}
    problems: list[str] = []
    attempts = 0
    try:
        with tempfile.TemporaryDirectory(prefix="pf-bench-replicas-") as tmp:
            while attempts < p.placement_attempts:
                attempts += 1
                work = Path(tmp) / f"run-{attempts}"
                work.mkdir()
                with _mesh_up(work, p, log, problems) as mesh:
                    numbers = _measure(mesh, work, p, log)
                if numbers is not None:
                    break
                log("replica 2 holds no proxy the flip reaches: bringing the mesh up again")
            else:
                return {"error": f"replica 2 held no affected proxy in {attempts} meshes"}
    except BenchmarkError as exc:
        return {"error": str(exc), "problems": problems}
    numbers["mesh_attempts"] = attempts
    numbers["problems"] = problems
    if problems:
        numbers["error"] = "; ".join(problems)
    return numbers


def _ms(summary: Any) -> str:
    if not summary or summary.get("max") is None:
        return "-"
    return " / ".join(f"{summary[k]:.0f}" for k in ("p50", "p90", "p99", "max"))


def replicas_table(result: dict[str, Any]) -> Table:
    """The numbers of one run (``bench/results/controlplane_replicas*.json``)."""
    params = result.get("parameters") or {}
    numbers = result.get("results") or {}
    table = Table(
        title=(
            f"cross-replica apply latency: Bookinfo, explicit mode, etcd addon, "
            f"{REPLICAS} replicas, {params.get('applies')} applies of a VirtualService "
            f"weight flip through replica 1, syncz polled every "
            f"{(params.get('poll_s') or 0) * 1000:.0f} ms"
        )
    )
    table.add_column("measure", no_wrap=True)
    table.add_column("p50 / p90 / p99 / max (ms)", no_wrap=True)
    table.add_column("detail", no_wrap=True)
    proxies = numbers.get("proxies") or ["-", "-"]
    late = numbers.get("not_arrived") or []
    rows = [
        (
            "apply -> every proxy of replica 2 ACKed",
            _ms(numbers.get("cross_replica_ms")),
            f"{numbers.get('replica2_proxies', '-')} proxies reached on replica 2 "
            f"({proxies[1]} connected)",
        ),
        (
            "apply -> every proxy of replica 1 ACKed",
            _ms(numbers.get("same_replica_ms")),
            f"{numbers.get('replica1_proxies', '-')} proxies reached on replica 1 "
            f"({proxies[0]} connected)",
        ),
        (
            "pilotfish apply (CLI) itself",
            _ms(numbers.get("apply_cli_ms")),
            f"{len(late)} applies not arrived within {params.get('deadline_s')} s; "
            f"{numbers.get('moved_between_replicas', 0)} arrivals on another replica",
        ),
    ]
    for row in rows:
        table.add_row(*row)
    return table
