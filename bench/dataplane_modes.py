"""Sidecar against sidecarless: latency, memory and CPU of each data-plane mode (root only).

Theory of operation. Every measured mesh is a real ``pilotfish up --detach``
(transparent mode, mTLS on, as a user runs it) with its own state directory in
a temporary directory, bridge ``pfbm0``, pods in ``198.18.252.0/24``, service
VIPs in ``198.19.252.0/24`` and free ports for the control plane, xDS, the CA,
xDS over mTLS and the ingress gateway, so it never meets a user's mesh or the
e2e tests' lanes. Each mesh is brought ``down`` in a ``finally``; afterwards no
netns, link, ``/etc/netns`` entry or tagged iptables rule of ``pfbm0`` and no
process naming the state directory may be left (a leftover is an error, and is
removed). The caller holds ``/tmp/pilotfish-e2e.lock`` while this runs.

**Latency.** One chain, the same manifests for every row, one mesh per row:
hey in the ``client`` pod's netns (``ip netns exec``: captured as the pod's
app would be) -> Service ``front`` (``bench/chain_front.py``, which makes one
pooled ``GET http://back:9080/?size=1024`` per request) -> Service ``back``
(``pilotfish.samples.echo``, a 1 KB body); the ``client`` pod runs ``sleep
infinity``. hey paces 4 connections at 250 rps each (1000 rps), a warm-up run
first, then the measured run. Every pod must be ready before it, and the
client's proxy (its sidecar, or the node proxy's outbound chain for the pod)
must have counted the load after it, so no row can go around its proxies.

- ``direct``: the namespace labelled ``istio-injection: disabled``: no proxy,
  cluster IPs by the runtime's kube-proxy-style DNAT. The baseline.
- ``sidecar``: the default, a sidecar per pod, mTLS between them.
- ``ambient``: ``--dataplane ambient``, the node proxy, HBONE between pods.
- ``ambient+waypoint``: not implemented in the product; reported as skipped.

A row's added latency is its percentile minus direct's, per percentile.

**Reference.** Two Envoys from a static bootstrap written here, with mTLS
from a throwaway CA made here (``cryptography``): hey (on the host) -> client
Envoy (plain HTTP listener on 127.0.80.1) -> mTLS -> server Envoy (TLS
listener on 127.0.80.2, client certificate required) -> the echo app on
127.0.80.2; its baseline is hey straight to the app. That is one proxy pair;
the chain crosses two (client->front and front->back), so a mesh row's
``vs_reference`` is its added latency divided by twice the reference's added
latency, per percentile: 1.0 means the mesh costs what two hand-configured
mTLS Envoy pairs cost.

**Memory and CPU.** Bookinfo (``samples/bookinfo/bookinfo.yaml`` and its
gateway, as the e2e tests run them) in sidecar mode and in ambient mode. The
processes the mesh adds for the six pods are found from ``pilotfish status -o
json`` (``sidecar_pid``: a pod's agent, an ambient pod's readiness process,
the node proxy's agent) and their descendants in ``/proc`` (the Envoys); the
apps and the ingress gateway are in both modes and not counted. Memory is the
sum of ``Pss`` and ``Rss`` from ``/proc/<pid>/smaps_rollup`` (PSS shares the
pages six sidecar Envoys have in common among them, so it is the fair sum),
once the mesh is ready and again after the load; CPU is user+system seconds of
the same processes over a fixed load through the ingress gateway (hey on the
host to ``/productpage``). "Envoy only" counts the Envoy processes, "all mesh
processes" also the agents and readiness processes.

Targets (issue 14 item 5), judged and reported, never failing the run:
ambient added p50 <= 0.5 x sidecar's; ambient "all mesh processes" PSS after
the load <= 1/3 of sidecar's; ambient plus waypoint <= sidecar: not measured.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from bench.controlplane_scale import BenchmarkError
from bench.dataplane_base import Process, http_get, start_process, wait_for
from bench.loadgen import LoadSpec, fetch_in, find_hey, run_hey
from bench.procstats import cpu_seconds
from pilotfish.runtime.ports import free_port

__all__ = [
    "FULL",
    "QUICK",
    "ModesParams",
    "added_latency",
    "judge_targets",
    "modes_table",
    "parse_smaps_rollup",
    "reference_ratio",
    "run_modes",
]

REPO = Path(__file__).resolve().parent.parent
BOOKINFO = REPO / "samples" / "bookinfo"
FRONT_APP = Path(__file__).resolve().parent / "chain_front.py"

BRIDGE = "pfbm0"
NETNS_PREFIX = f"{BRIDGE}-"
POD_CIDR = "198.18.252.0/24"
SERVICE_CIDR = "198.19.252.0/24"
EXPLICIT_CIDR = "127.81.252.0/24"  # unused in transparent mode; kept off the default range
NAMESPACE = "chain"
PORT = 9080
CLIENT_PORT = 8080
REF_CLIENT_IP = "127.0.80.1"
REF_SERVER_IP = "127.0.80.2"

PERCENTILES = ("p50", "p90", "p99")
# The chain crosses two proxy pairs (client->front, front->back); the reference one.
CHAIN_PROXY_PAIRS = 2
AMBIENT_LATENCY_TARGET = 0.5
MEMORY_TARGET = 1 / 3
WAYPOINT_SKIPPED = "waypoints are not implemented (issue 14 item 3)"
BOOKINFO_PODS = (
    "details-v1-0",
    "productpage-v1-0",
    "ratings-v1-0",
    "reviews-v1-0",
    "reviews-v2-0",
    "reviews-v3-0",
)


@dataclass(frozen=True, slots=True)
class ModesParams:
    """Load shapes and bounds. ``rate`` is the total over ``connections``."""

    rate: int
    connections: int
    response_bytes: int
    duration_s: float
    warmup_s: float
    ingress_rate: int
    ingress_connections: int
    ingress_duration_s: float
    envoy_concurrency: int = 2  # what `pilotfish agent` gives a sidecar's Envoy
    up_timeout_s: float = 300.0
    ready_deadline_s: float = 90.0


FULL = ModesParams(
    rate=1000,
    connections=4,
    response_bytes=1024,
    duration_s=20,
    warmup_s=5,
    ingress_rate=200,
    ingress_connections=4,
    ingress_duration_s=10,
)
QUICK = ModesParams(
    rate=1000,
    connections=4,
    response_bytes=1024,
    duration_s=5,
    warmup_s=2,
    ingress_rate=200,
    ingress_connections=4,
    ingress_duration_s=5,
)

Log = Callable[[str], None]


# --- pure parts ----------------------------------------------------------------------------


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """``Pss`` and ``Rss`` (kB) of a ``/proc/<pid>/smaps_rollup``, as ``pss_kib``/``rss_kib``.

    A field missing from the text is absent from the result.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        key = {"Pss": "pss_kib", "Rss": "rss_kib"}.get(name.strip())
        fields = rest.split()
        if key and fields and fields[0].isdigit():
            out[key] = int(fields[0])
    return out


def added_latency(
    row: Mapping[str, Any] | None, base: Mapping[str, Any] | None
) -> dict[str, float | None]:
    """Per percentile, ``row``'s latency minus ``base``'s (ms); None where either is missing."""
    row_ms = (row or {}).get("latency_ms") or {}
    base_ms = (base or {}).get("latency_ms") or {}
    out: dict[str, float | None] = {}
    for pct in PERCENTILES:
        a, b = row_ms.get(pct), base_ms.get(pct)
        out[pct] = None if a is None or b is None else float(a) - float(b)
    return out


def reference_ratio(
    added: Mapping[str, float | None],
    reference_added: Mapping[str, float | None],
    pairs: int = CHAIN_PROXY_PAIRS,
) -> dict[str, float | None]:
    """Per percentile, ``added / (pairs x reference_added)``.

    The reference is one proxy pair; a row crossing ``pairs`` of them is compared
    with that many. None when either side is missing or the reference added
    nothing measurable (<= 0: the ratio would be meaningless).
    """
    out: dict[str, float | None] = {}
    for pct in PERCENTILES:
        a, r = added.get(pct), reference_added.get(pct)
        out[pct] = None if a is None or r is None or r <= 0 else a / (pairs * r)
    return out


def _check(value: float | None, limit: float, what: str) -> dict[str, Any]:
    return {
        "what": what,
        "value": value,
        "limit": limit,
        "met": None if value is None else value <= limit,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def judge_targets(rows: Mapping[str, Any], memory: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's targets from the rows and the memory runs: met, not met, or not measured.

    ``met`` is None (not measured) when a number is missing, e.g. a mode that
    could not run; a not-measured target is never "met".
    """
    sidecar = (rows.get("sidecar") or {}).get("added_ms") or {}
    ambient = (rows.get("ambient") or {}).get("added_ms") or {}
    latency = _check(
        _ratio(ambient.get("p50"), sidecar.get("p50")),
        AMBIENT_LATENCY_TARGET,
        "ambient L4 added p50 / sidecar added p50",
    )

    def total(mode: str, group: str, key: str) -> float | None:
        sample = ((memory.get(mode) or {}).get("after_load") or {}).get(group) or {}
        value = sample.get(key)
        return None if value is None else float(value)

    mem = _check(
        _ratio(total("ambient", "all", "pss_kib"), total("sidecar", "all", "pss_kib")),
        MEMORY_TARGET,
        "ambient / sidecar total PSS of all mesh processes for the 6 pods, after the load",
    )
    mem["envoy_only"] = _ratio(
        total("ambient", "envoy", "pss_kib"), total("sidecar", "envoy", "pss_kib")
    )
    mem["rss_all"] = _ratio(total("ambient", "all", "rss_kib"), total("sidecar", "all", "rss_kib"))
    waypoint = {
        "what": "ambient+waypoint added p50 <= sidecar added p50",
        "value": None,
        "limit": 1.0,
        "met": None,
        "note": f"not measured: {WAYPOINT_SKIPPED}",
    }
    return {"ambient_added_p50": latency, "proxy_memory": mem, "waypoint_added_p50": waypoint}


# --- table ---------------------------------------------------------------------------------

_ROW_LABELS = {
    "reference_direct": "reference: direct to the app (loopback)",
    "reference": "reference: 2 static Envoys, mTLS (1 proxy pair)",
    "direct": "direct (injection disabled, cluster-IP DNAT)",
    "sidecar": "sidecar (mTLS)",
    "ambient": "ambient L4 (node proxy, HBONE)",
    "ambient+waypoint": "ambient + waypoint",
}


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def _x(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}x"


def _mib(kib: Any) -> str:
    return "-" if kib is None else f"{float(kib) / 1024:.1f}"


def _verdict(check: Mapping[str, Any] | None) -> str:
    if not check:
        return "-"
    met = check.get("met")
    if met is None:
        return "[yellow]not measured[/yellow]"
    return "[green]met[/green]" if met else "[red]not met[/red]"


def _latency_table(params: Mapping[str, Any], numbers: Mapping[str, Any]) -> Table:
    rows: Mapping[str, Any] = numbers.get("rows") or {}
    title = (
        f"data-plane modes: two-hop chain, {params.get('rate')} rps, "
        f"{params.get('connections')} conns, {params.get('response_bytes')} B, "
        f"{params.get('duration_s')} s after {params.get('warmup_s')} s warm-up, mTLS"
    )
    table = Table(title=title)
    table.add_column("row", no_wrap=True)
    for column in (
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "rps",
        "failed",
        "added p50",
        "added p90",
        "added p99",
        "vs ref p50",
        "vs ref p90",
        "vs ref p99",
    ):
        table.add_column(column, justify="right")
    notes: list[str] = []
    # A fixed order: result files are written with sorted keys.
    order = [n for n in _ROW_LABELS if n in rows] + [n for n in rows if n not in _ROW_LABELS]
    for name in order:
        row = rows[name]
        label = _ROW_LABELS.get(name, name)
        # The reason goes under the table: in a cell it would widen the column.
        if row.get("skipped"):
            table.add_row(label, "[yellow]skipped[/yellow]")
            notes.append(f"{label} skipped: {row['skipped']}")
            continue
        if row.get("error"):
            table.add_row(label, "[red]error[/red]")
            notes.append(f"[red]{label}: {row['error']}[/red]")
            continue
        latency = row.get("latency_ms") or {}
        added = row.get("added_ms") or {}
        ratio = row.get("vs_reference") or {}
        failed = int(row.get("failed") or 0)
        rps = row.get("achieved_rps")
        table.add_row(
            label,
            *(_ms(latency.get(p)) for p in PERCENTILES),
            "-" if rps is None else f"{rps:.0f}",
            f"[red]{failed}[/red]" if failed else "0",
            *(_ms(added.get(p)) if added else "" for p in PERCENTILES),
            *(_x(ratio.get(p)) if ratio else "" for p in PERCENTILES),
        )
    table.caption = "\n".join(notes) or None
    return table


def _memory_table(params: Mapping[str, Any], numbers: Mapping[str, Any]) -> Table:
    memory: Mapping[str, Any] = numbers.get("memory") or {}
    title = (
        f"Bookinfo's 6 pods: mesh processes' memory (MiB) and CPU over "
        f"{params.get('ingress_rate')} rps x {params.get('ingress_duration_s')} s "
        "to /productpage through the ingress gateway"
    )
    table = Table(title=title)
    table.add_column("mode", no_wrap=True)
    notes: list[str] = []
    for column in (
        "processes",
        "Envoy PSS",
        "Envoy RSS",
        "all PSS",
        "all RSS",
        "all PSS (ready)",
        "Envoy CPU s",
        "all CPU s",
        "load rps",
        "failed",
    ):
        table.add_column(column, justify="right")
    for mode in sorted(memory, key=lambda m: (m != "sidecar", m)):
        run = memory[mode]
        if run.get("error"):
            table.add_row(mode, "[red]error[/red]")
            notes.append(f"[red]{mode}: {run['error']}[/red]")
            continue
        after = run.get("after_load") or {}
        ready = run.get("ready") or {}
        cpu = run.get("cpu_s") or {}
        load = run.get("load") or {}
        envoy, every = after.get("envoy") or {}, after.get("all") or {}
        failed = int(load.get("failed") or 0)
        rps = load.get("achieved_rps")
        table.add_row(
            mode,
            f"{every.get('processes', '-')} ({envoy.get('processes', '-')} Envoy)",
            _mib(envoy.get("pss_kib")),
            _mib(envoy.get("rss_kib")),
            _mib(every.get("pss_kib")),
            _mib(every.get("rss_kib")),
            _mib((ready.get("all") or {}).get("pss_kib")),
            "-" if cpu.get("envoy") is None else f"{cpu['envoy']:.2f}",
            "-" if cpu.get("all") is None else f"{cpu['all']:.2f}",
            "-" if rps is None else f"{rps:.0f}",
            f"[red]{failed}[/red]" if failed else "0",
        )
    table.caption = "\n".join(notes) or None
    return table


def _targets_table(numbers: Mapping[str, Any]) -> Table:
    targets: Mapping[str, Any] = numbers.get("targets") or {}
    table = Table(title="targets (issue 14 item 5)")
    table.add_column("target", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("verdict")
    table.add_column("also")
    latency = targets.get("ambient_added_p50") or {}
    table.add_row(
        "ambient L4 added p50 / sidecar added p50",
        _x(latency.get("value")),
        f"<= {AMBIENT_LATENCY_TARGET:g}x",
        _verdict(latency),
        "",
    )
    mem = targets.get("proxy_memory") or {}
    table.add_row(
        "ambient / sidecar PSS, all mesh processes (6 pods)",
        _x(mem.get("value")),
        "<= 0.33x",
        _verdict(mem),
        f"Envoy only {_x(mem.get('envoy_only'))}, RSS all {_x(mem.get('rss_all'))}",
    )
    waypoint = targets.get("waypoint_added_p50") or {}
    table.add_row(
        "ambient+waypoint added p50 / sidecar's",
        "-",
        "<= 1x",
        _verdict(waypoint),
        str(waypoint.get("note", "")),
    )
    return table


def modes_table(result: Mapping[str, Any]) -> RenderableType:
    """The latency rows, the memory/CPU runs and the targets, as three tables."""
    params: Mapping[str, Any] = result.get("parameters") or {}
    numbers: Mapping[str, Any] = result.get("results") or {}
    if numbers.get("skipped"):
        table = Table(title="data-plane modes")
        table.add_column("")
        table.add_row(f"[yellow]skipped: {numbers['skipped']}[/yellow]")
        return table
    parts: list[RenderableType] = [
        _latency_table(params, numbers),
        _memory_table(params, numbers),
        _targets_table(numbers),
    ]
    notes = [
        "added = row minus direct (same chain, no proxy); vs ref = added / "
        f"({CHAIN_PROXY_PAIRS} x reference's added), the chain crossing {CHAIN_PROXY_PAIRS} "
        "proxy pairs and the reference one",
    ]
    loads = numbers.get("load_average")
    if loads:
        notes.append(f"load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f}")
    if result.get("error"):
        notes.append(f"[red]error: {result['error']}[/red]")
    parts.append("\n".join(notes))
    return Group(*parts)


# --- processes and memory --------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def process_tree(root: int, exclude: Iterable[int] = ()) -> list[int]:
    """``root`` and its descendants, leaving out the subtrees of ``exclude``."""
    skip = set(exclude)
    seen: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in skip or pid in seen:
            continue
        seen.append(pid)
        todo += _children(pid)
    return seen


def is_envoy(pid: int) -> bool:
    try:
        return "envoy" in Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return False


def memory_of(pids: Iterable[int]) -> dict[str, dict[str, int]]:
    """Summed PSS/RSS (KiB) and process counts: ``envoy`` (Envoys only) and ``all``."""
    groups = {g: {"pss_kib": 0, "rss_kib": 0, "processes": 0} for g in ("envoy", "all")}
    for pid in pids:
        try:
            sample = parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
        except OSError:
            continue  # gone
        for group in ("envoy", "all") if is_envoy(pid) else ("all",):
            groups[group]["processes"] += 1
            groups[group]["pss_kib"] += sample.get("pss_kib", 0)
            groups[group]["rss_kib"] += sample.get("rss_kib", 0)
    return groups


def _cpu(pids: Iterable[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        value = cpu_seconds(pid)
        if value is not None:
            out[pid] = value
    return out


# --- meshes ------------------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    # The pods' `python` is this interpreter's venv, first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def _host_leftovers() -> Any:
    from pilotfish.runtime.network.host import find_leftovers

    return find_leftovers(BRIDGE, NETNS_PREFIX)


def _processes_naming(text: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd:
            out.append(int(entry))
    return out


class Mesh:
    """One ``pilotfish up --detach`` with its own state directory, ports and ranges."""

    def __init__(self, work: Path, name: str, log: Log) -> None:
        self.state_dir = work / f"state-{name}"
        self.name = name
        self.log = log
        self.cp_port = free_port()
        self.xds_port = free_port()
        self.secure_port = free_port()
        self.xds_mtls_port = free_port()
        self.ingress_port = free_port()

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pilotfish.cli.main", *args]
        if args and args[0] in ("up", "down", "status"):
            argv += ["--state-dir", str(self.state_dir)]
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchmarkError(f"pilotfish {args[0]} did not finish in {timeout:.0f} s") from exc

    def up(self, manifests: Iterable[Path], dataplane: str, timeout: float) -> None:
        args = [
            "up",
            *map(str, manifests),
            "--detach",
            "--mode",
            "transparent",
            "--ingress-port",
            str(self.ingress_port),
            "--control-plane-port",
            str(self.cp_port),
            "--xds-port",
            str(self.xds_port),
            "--bridge",
            BRIDGE,
            "--pod-cidr",
            POD_CIDR,
            "--service-cidr",
            SERVICE_CIDR,
            "--explicit-cidr",
            EXPLICIT_CIDR,
            "--secure-port",
            str(self.secure_port),
            "--xds-mtls-port",
            str(self.xds_mtls_port),
            "--dataplane",
            dataplane,
        ]
        started = time.monotonic()
        done = self.cli(*args, timeout=timeout)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-1500:]
            raise BenchmarkError(f"pilotfish up ({self.name}) failed ({done.returncode}): {tail}")
        self.log(f"{self.name}: mesh up in {time.monotonic() - started:.1f} s")

    def down(self) -> list[str]:
        """``down``; then what is left of the mesh (removed), as problems to report."""
        problems: list[str] = []
        try:
            done = self.cli("down", timeout=120)
            if done.returncode != 0:
                problems.append(f"down exited {done.returncode}: {done.stderr.strip()[-300:]}")
        except BenchmarkError as exc:
            problems.append(str(exc))
        left = _host_leftovers()
        if left.bridge or left.netns or left.host_veths or left.iptables_rules or left.files:
            problems.append(f"left on the host after down: {left}")
            from pilotfish.runtime.network.host import cleanup_leftovers

            with contextlib.suppress(RuntimeError):
                cleanup_leftovers(left)
        stray = _processes_naming(str(self.state_dir))
        if stray:
            problems.append(f"processes left after down: {stray}")
            for pid in stray:  # descendants of this run, by pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        if problems:
            self.log(f"{self.name}: " + "; ".join(problems))
        return problems

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "state.json").read_text()))

    def netns(self, namespace: str, pod: str) -> str:
        return str(self.state()["pods"][f"{namespace}/{pod}"]["netns"])

    def pods(self) -> list[dict[str, Any]]:
        done = self.cli("status", "-o", "json", timeout=60)
        if done.returncode != 0:
            raise BenchmarkError(f"status failed: {done.stderr.strip()[-300:]}")
        return list(json.loads(done.stdout)["pods"])


@contextlib.contextmanager
def mesh_up(
    work: Path,
    name: str,
    manifests: Iterable[Path],
    dataplane: str,
    params: ModesParams,
    log: Log,
    problems: list[str],
) -> Iterator[Mesh]:
    """A mesh for the block; ``down`` and the leftover check whatever happens."""
    left = _host_leftovers()
    if left.bridge or left.netns or left.host_veths or left.iptables_rules or left.files:
        from pilotfish.runtime.network.host import cleanup_leftovers

        log(f"removing leftovers of an earlier run on {BRIDGE}: {left}")
        cleanup_leftovers(left)
    mesh = Mesh(work, name, log)
    try:
        mesh.up(manifests, dataplane, params.up_timeout_s)
        yield mesh
    finally:
        problems += [f"{name}: {p}" for p in mesh.down()]


# --- the chain -------------------------------------------------------------------------------


def _workload(
    name: str, command: list[str], port: int | None, env: Mapping[str, str], probe: bool = True
) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "pilotfish.io/v1alpha1",
        "kind": "Workload",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": name, "version": "v1"},
        },
        "spec": {"replicas": 1, "serviceAccount": name, "command": command},
    }
    if env:
        doc["spec"]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if port is not None:
        doc["spec"]["ports"] = [{"name": "http", "containerPort": port}]
    if port is not None and probe:
        doc["spec"]["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}}
    return json.dumps(doc)


def _service(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": PORT}]},
        }
    )


def chain_manifest(injection_disabled: bool, response_bytes: int) -> str:
    """The chain's objects (JSON documents are YAML); only the Namespace label differs."""
    labels = {"istio-injection": "disabled"} if injection_disabled else {}
    namespace = json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}}
    )
    back = [
        "python",
        "-m",
        "pilotfish.samples.echo",
        "--service",
        "back",
        "--version",
        "v1",
        "--port",
        str(PORT),
    ]
    front_env = {"PORT": str(PORT), "BACK_URL": f"http://back:{PORT}/?size={response_bytes}"}
    docs = [
        namespace,
        _workload("back", back, PORT, {}),
        _service("back"),
        _workload("front", ["python", str(FRONT_APP)], PORT, front_env),
        _service("front"),
        # The client declares a port nobody listens on: an ambient pod without ports gets
        # an inbound listener with no filter chains, which the node proxy rejects, and
        # the pod never turns ready (reported in the README).
        _workload("client", ["sleep", "infinity"], CLIENT_PORT, {}, probe=False),
    ]
    return "\n---\n".join(docs) + "\n"


def _measure(spec: LoadSpec, warmup_s: float, hey: str) -> dict[str, Any]:
    """A warm-up run (discarded), then the measured run, with the load average around it."""
    if warmup_s > 0:
        run_hey(LoadSpec(**{**asdict(spec), "duration_s": warmup_s}), hey)
    load_before = os.getloadavg()[0]
    result = run_hey(spec, hey).as_dict()
    result["load_average"] = [load_before, os.getloadavg()[0]]
    return result


def _chain_row(
    name: str,
    work: Path,
    params: ModesParams,
    hey: str,
    log: Log,
    problems: list[str],
) -> dict[str, Any]:
    manifest = work / f"chain-{name.replace('+', '-')}.yaml"
    manifest.write_text(chain_manifest(name == "direct", params.response_bytes))
    dataplane = "ambient" if name == "ambient" else "sidecar"
    with mesh_up(work, name, [manifest], dataplane, params, log, problems) as mesh:
        prefix = ("ip", "netns", "exec", mesh.netns(NAMESPACE, "client-0"))
        url = f"http://front:{PORT}/"

        def answers() -> bool:
            status, length = fetch_in(prefix, url, (), 3.0)
            return status == 200 and length >= params.response_bytes

        waited = wait_for(f"{url} from the client pod", answers, params.ready_deadline_s)
        pods = mesh.pods()
        rows = {p["name"]: p.get("dataplane") for p in pods}
        unready = {p["name"]: p.get("message") for p in pods if not p.get("ready")}
        if unready:
            raise BenchmarkError(f"pods not ready: {unready}")
        log(f"{name}: chain answers after {waited:.1f} s; data planes {rows}")
        spec = LoadSpec(
            url=url,
            headers=(),
            rate=params.rate,
            connections=params.connections,
            duration_s=params.duration_s,
            exec_prefix=prefix,
        )
        before = _client_path_count(mesh, dataplane, prefix) if name != "direct" else 0
        result = _measure(spec, params.warmup_s, hey)
        result["dataplanes"] = rows
        if name != "direct":
            # The load must have crossed the mode's proxy, not gone around it.
            crossed = _client_path_count(mesh, dataplane, prefix) - before
            result["client_proxy_count"] = crossed
            if crossed <= 0:
                raise BenchmarkError(f"{name}: the client's proxy counted none of the load")
        return result


def _client_path_count(mesh: Mesh, dataplane: str, prefix: tuple[str, ...]) -> int:
    """A counter of the client's proxy for its calls to ``front``.

    Sidecar: the client sidecar's requests to the ``front`` cluster (its admin API
    inside the pod). Ambient: the node proxy's connections on the client pod's
    outbound chain for ``front`` (L4: connections, not requests).
    """
    host = f"front.{NAMESPACE}.svc.cluster.local"
    if dataplane == "ambient":
        port = mesh.state()["gateways"]["node-proxy"]["admin_port"]
        text = http_get(f"http://127.0.0.1:{port}/stats?filter=client-0")[1].decode()
        wanted = f"tcp.ambient_outbound|{PORT}|{host}|client-0.{NAMESPACE}.downstream_cx_total"
    else:
        done = subprocess.run(
            [*prefix, "curl", "-s", "-m", "5", "http://127.0.0.1:15000/stats?filter=front"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        text = done.stdout
        wanted = f"cluster.outbound|{PORT}||{host}.upstream_rq_total"
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == wanted and value.strip().isdigit():
            return int(value)
    return 0


# --- the reference: two static Envoys with mTLS ----------------------------------------------


def _write_certs(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a client and a server certificate it signed (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("reference CA"))
        .issuer_name(name("reference CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role in ("client", "server"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(role))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"spiffe://reference.local/{role}")]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        paths[f"{role}_cert"] = directory / f"{role}.pem"
        paths[f"{role}_key"] = directory / f"{role}-key.pem"
        paths[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{role}_key"].write_bytes(key_pem(key))
        paths[f"{role}_key"].chmod(0o600)
    return paths


def _address(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


def _http_listener(name: str, ip: str, port: int, cluster: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": _address(ip, port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": name,
                            "route_config": {
                                "virtual_hosts": [
                                    {
                                        "name": "all",
                                        "domains": ["*"],
                                        "routes": [
                                            {
                                                "match": {"prefix": "/"},
                                                "route": {"cluster": cluster},
                                            }
                                        ],
                                    }
                                ]
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters."
                                        "http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


def _tls_context(certs: Mapping[str, Path], role: str, peer: str) -> dict[str, Any]:
    return {
        "tls_certificates": [
            {
                "certificate_chain": {"filename": str(certs[f"{role}_cert"])},
                "private_key": {"filename": str(certs[f"{role}_key"])},
            }
        ],
        "validation_context": {
            "trusted_ca": {"filename": str(certs["ca"])},
            "match_typed_subject_alt_names": [
                {"san_type": "URI", "matcher": {"exact": f"spiffe://reference.local/{peer}"}}
            ],
        },
    }


def _cluster(name: str, ip: str, port: int, tls: dict[str, Any] | None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(ip, port)}}]}],
        },
    }
    if tls is not None:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                "UpstreamTlsContext",
                **tls,
            },
        }
    return cluster


def reference_bootstraps(
    certs: Mapping[str, Path], ports: Mapping[str, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The client and server Envoys' static bootstraps.

    Client: plain HTTP in on ``REF_CLIENT_IP:listener``, out over mTLS (its
    certificate, the server's SAN checked) to the server Envoy. Server: a TLS
    listener on ``REF_SERVER_IP:tls`` requiring a client certificate of the CA
    with the client's SAN, routing to the app on ``REF_SERVER_IP:app``.
    """
    client = {
        "admin": {"address": _address(REF_CLIENT_IP, ports["client_admin"])},
        "static_resources": {
            "listeners": [_http_listener("outbound", REF_CLIENT_IP, ports["listener"], "server")],
            "clusters": [
                _cluster(
                    "server",
                    REF_SERVER_IP,
                    ports["tls"],
                    {"common_tls_context": _tls_context(certs, "client", "server")},
                )
            ],
        },
    }
    inbound = _http_listener("inbound", REF_SERVER_IP, ports["tls"], "app")
    inbound["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
            "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": _tls_context(certs, "server", "client"),
        },
    }
    server = {
        "admin": {"address": _address(REF_SERVER_IP, ports["server_admin"])},
        "static_resources": {
            "listeners": [inbound],
            "clusters": [_cluster("app", REF_SERVER_IP, ports["app"], None)],
        },
    }
    return client, server


def _reference(
    work: Path, params: ModesParams, hey: str, log: Log
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(direct to the app, through the two Envoys), both on loopback addresses."""
    from pilotfish.envoy_binary import find_envoy

    ref = work / "reference"
    ref.mkdir()
    certs = _write_certs(ref)
    ports = {k: free_port() for k in ("client_admin", "server_admin", "listener", "tls", "app")}
    client, server = reference_bootstraps(certs, ports)
    with contextlib.ExitStack() as stack:
        app = start_process(
            stack,
            "reference-back",
            [
                sys.executable,
                "-m",
                "pilotfish.samples.echo",
                "--service",
                "back",
                "--version",
                "v1",
                "--host",
                REF_SERVER_IP,
                "--port",
                str(ports["app"]),
            ],
            ref,
        )
        envoys: list[Process] = [app]
        for role, config in (("server", server), ("client", client)):
            path = ref / f"{role}-envoy.json"
            path.write_text(json.dumps(config, indent=1))
            command = [find_envoy(), "-c", str(path), "--concurrency"]
            command += [str(params.envoy_concurrency), "-l", "warning"]
            # A base id of its own: no shared-memory clash with any other Envoy here.
            command += ["--base-id", str((os.getpid() * 2 + len(envoys)) % 60000 + 2000)]
            envoys.append(start_process(stack, f"reference-{role}-envoy", command, ref))
        query = f"/?size={params.response_bytes}"
        direct_url = f"http://{REF_SERVER_IP}:{ports['app']}{query}"
        proxied_url = f"http://{REF_CLIENT_IP}:{ports['listener']}{query}"
        for what, url in (("the echo app", direct_url), ("the client Envoy", proxied_url)):
            wait_for(
                what,
                lambda u=url: http_get(u)[0] == 200,
                params.ready_deadline_s,
                tuple(envoys),
            )
        log(f"reference ready: {proxied_url} -> mTLS -> {REF_SERVER_IP}:{ports['tls']}")
        rows = []
        for url in (direct_url, proxied_url):
            spec = LoadSpec(
                url=url,
                headers=(),
                rate=params.rate,
                connections=params.connections,
                duration_s=params.duration_s,
            )
            rows.append(_measure(spec, params.warmup_s, hey))
        for process in envoys:
            process.check_alive()
        return rows[0], rows[1]


# --- Bookinfo: memory and CPU ------------------------------------------------------------------


def _mesh_pids(mesh: Mesh, mode: str) -> list[int]:
    """The processes the mesh adds for Bookinfo's six pods (not the apps, not the gateway)."""
    rows = {p["name"]: p for p in mesh.pods()}
    missing = [n for n in BOOKINFO_PODS if not rows.get(n, {}).get("ready")]
    if missing:
        raise BenchmarkError(f"pods not ready: {missing}")
    roots = [int(rows[n]["sidecar_pid"]) for n in BOOKINFO_PODS if rows[n].get("sidecar_pid")]
    if mode == "ambient":
        node = rows.get("node-proxy") or {}
        if not node.get("sidecar_pid"):
            raise BenchmarkError("no node proxy in the status")
        roots.append(int(node["sidecar_pid"]))
    if len(roots) != len(BOOKINFO_PODS) + (mode == "ambient"):
        raise BenchmarkError(f"a mesh process is missing from the status: {roots}")
    apps = [int(p["app_pid"]) for p in rows.values() if p.get("app_pid")]
    pids: list[int] = []
    for root in roots:
        pids += [p for p in process_tree(root, apps) if p not in pids]
    return pids


def _bookinfo(
    mode: str, work: Path, params: ModesParams, hey: str, log: Log, problems: list[str]
) -> dict[str, Any]:
    manifests = [BOOKINFO / "bookinfo.yaml", BOOKINFO / "networking" / "bookinfo-gateway.yaml"]
    with mesh_up(work, f"bookinfo-{mode}", manifests, mode, params, log, problems) as mesh:
        url = f"http://127.0.0.1:{mesh.ingress_port}/productpage"
        waited = wait_for(url, lambda: http_get(url, timeout=5)[0] == 200, params.ready_deadline_s)
        pids = _mesh_pids(mesh, mode)
        envoys = [p for p in pids if is_envoy(p)]
        log(f"bookinfo {mode}: productpage after {waited:.1f} s; {len(pids)} mesh processes")
        ready = memory_of(pids)
        cpu_before = _cpu(pids)
        spec = LoadSpec(
            url=url,
            headers=(),
            rate=params.ingress_rate,
            connections=params.ingress_connections,
            duration_s=params.ingress_duration_s,
        )
        load = run_hey(spec, hey).as_dict()
        cpu_after = _cpu(pids)
        after = memory_of(pids)
        both = [p for p in cpu_before if p in cpu_after]
        return {
            "pids": pids,
            "envoy_pids": envoys,
            "ready": ready,
            "after_load": after,
            "cpu_s": {
                "envoy": sum(cpu_after[p] - cpu_before[p] for p in both if p in envoys),
                "all": sum(cpu_after[p] - cpu_before[p] for p in both),
            },
            "load": load,
        }


# --- the run -----------------------------------------------------------------------------------


def run_modes(params: ModesParams, log: Log = print) -> dict[str, Any]:
    """Every row and both memory runs; a part that fails is recorded and the rest still runs."""
    if os.geteuid() != 0:
        return {"skipped": "needs root"}
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return {"error": f"{tool} is not installed"}
    hey = find_hey(install=True, log=log)
    if hey is None:
        return {"error": "hey is not installed"}
    errors: list[str] = []
    problems: list[str] = []
    rows: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    load_before = os.getloadavg()[0]

    def attempt(what: str, into: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
        try:
            into[key] = fn()
        except (BenchmarkError, RuntimeError, OSError, KeyError, ValueError) as exc:
            errors.append(f"{what}: {exc}")
            into[key] = {"error": str(exc)[-500:]}
            log(f"[red]{what} failed:[/red] {exc}")

    with tempfile.TemporaryDirectory(prefix="pf-bench-modes-") as tmp:
        work = Path(tmp)
        reference: dict[str, Any] = {}
        attempt(
            "reference",
            reference,
            "pair",
            lambda: _reference(work, params, hey, log),
        )
        pair = reference["pair"]
        if isinstance(pair, tuple):
            rows["reference_direct"], rows["reference"] = pair
        else:
            rows["reference_direct"] = rows["reference"] = pair
        for name in ("direct", "sidecar", "ambient"):
            attempt(
                name,
                rows,
                name,
                lambda n=name: _chain_row(n, work, params, hey, log, problems),
            )
        rows["ambient+waypoint"] = {"skipped": WAYPOINT_SKIPPED}
        for mode in ("sidecar", "ambient"):
            attempt(
                f"bookinfo {mode}",
                memory,
                mode,
                lambda m=mode: _bookinfo(m, work, params, hey, log, problems),
            )

    ref_added = added_latency(rows.get("reference"), rows.get("reference_direct"))
    if "error" not in rows["reference"]:
        rows["reference"]["added_ms"] = ref_added
    for name in ("sidecar", "ambient"):
        row = rows.get(name) or {}
        if "error" in row or "error" in rows.get("direct", {}):
            continue
        row["added_ms"] = added_latency(row, rows["direct"])
        row["vs_reference"] = reference_ratio(row["added_ms"], ref_added)
    out: dict[str, Any] = {
        "rows": rows,
        "memory": memory,
        "targets": judge_targets(rows, memory),
        "reference_proxy_pairs": 1,
        "chain_proxy_pairs": CHAIN_PROXY_PAIRS,
        "load_average": [load_before, os.getloadavg()[0]],
        "cleanup_problems": problems,
    }
    if errors or problems:
        out["error"] = "; ".join(errors + problems)
    return out
