"""Data-plane overhead: the same fixed-rate load direct to an app and through two sidecars.

Theory of operation: one echo app (``python -m pilotfish.samples.echo``) answers
every request with a JSON body padded to ``response_bytes`` (``?size=N``). Each
*arrangement* is a way of reaching it; :data:`ARRANGEMENTS` lists them in the
order they run:

- ``direct``: the load generator connects to the app's port;
- ``sidecars``: ``pilotfish control-plane`` serves a ``Service`` ``echo`` (port
  9080) with one ``WorkloadEntry`` at the server's loopback IP; two
  ``pilotfish agent`` processes in ``--interception none`` mode run a client
  and a server Envoy, each on its own 127.x address. The load goes to the client
  sidecar's HTTP proxy listener (``http://<client-ip>:15001/``, ``Host:
  echo:9080``), which routes to the server sidecar's inbound listener, which
  forwards to the app.
- ``direct_pods`` and ``transparent_sidecars`` (``bench.dataplane_transparent``,
  root only): the same in network namespaces on a bridge, as ``pilotfish up``
  runs pods; the load generator runs inside the client pod.

An arrangement is a function ``(rig, stack) -> Target``: it starts what it needs,
registers the clean-up on ``stack`` (an ExitStack closed right after its
measurement) and returns the URL, the headers, the pids of the proxies on the
path and, when it has its own, where the load runs from and the app's pid. One
that cannot run here raises ``ArrangementSkipped``: it is reported, not an error.

For each arrangement: a probe request must return 200 with a body of the
expected size (polled with a deadline), a warm-up run is discarded, then the
measured run. Around the measured run the proxies' and the app's CPU seconds are
read from ``/proc/<pid>/stat`` (giving average cores used) and, at its end, each
proxy's ``VmRSS`` and ``VmHWM``. Every wait is bounded and every process started
here is stopped (SIGTERM, then SIGKILL to its process group) whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from bench.controlplane_scale import BenchmarkError, pilotfish_executable
from bench.dataplane_base import (
    SERVICE_HOST,
    SERVICE_PORT,
    Arrangement,
    ArrangementSkipped,
    DataplaneParams,
    Process,
    Rig,
    Target,
    answers_200,
    envoy_pid,
    free_port,
    has_envoy,
    http_get,
    start_process,
    wait_for,
)
from bench.dataplane_transparent import direct_pods, transparent_sidecars
from bench.loadgen import (
    LoadResult,
    LoadSpec,
    fetch_in,
    find_hey,
    run_hey,
    run_python_load,
)
from bench.procstats import cpu_seconds, peak_rss_mib, rss_mib
from pilotfish.agent.launch import AgentLaunch

__all__ = [
    "ADDED_PAIRS",
    "ARRANGEMENTS",
    "FULL",
    "QUICK",
    "REFERENCE",
    "Arrangement",
    "ArrangementSkipped",
    "DataplaneParams",
    "Rig",
    "Target",
    "direct",
    "explicit_sidecars",
    "run_dataplane",
]

OUTBOUND_PORT = 15001
# Two Envoys with hand-written static config and mTLS, this machine class, 1000 rps,
# 4 connections, concurrency 2 (docs: /work/shared/ARCHITECTURE.md, verified facts).
REFERENCE: dict[str, Any] = {
    "setup": "two Envoys, hand-written static config, mTLS; 1000 rps, 4 connections",
    "direct_ms": {"p50": [0.2, 0.3], "p90": [0.3, 0.4]},
    "sidecars_ms": {"p50": [1.0, 1.2], "p90": [1.2, 1.5]},
    "envoy_rss_mib": 67,
}


FULL = DataplaneParams(rate=1000, connections=4, response_bytes=1024, duration_s=15, warmup_s=2)
QUICK = DataplaneParams(rate=1000, connections=4, response_bytes=1024, duration_s=5, warmup_s=2)


def _start_app(stack: contextlib.ExitStack, work: Path, deadline_s: float) -> tuple[int, int]:
    """Start the echo app on a free loopback port; return (port, pid) once it answers."""
    port = free_port()
    app = start_process(
        stack,
        "echo",
        [
            sys.executable,
            "-m",
            "pilotfish.samples.echo",
            "--service",
            "echo",
            "--version",
            "v1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        work,
    )
    url = f"http://127.0.0.1:{port}/ready-probe"
    wait_for("the echo app", answers_200(url), deadline_s, (app,))
    return port, app.proc.pid


# --- arrangements -------------------------------------------------------------------------


def _query(rig: Rig) -> str:
    return f"/?size={rig.params.response_bytes}"


def direct(rig: Rig, stack: contextlib.ExitStack) -> Target:
    """The load straight to the app's port, with the same Host header as through the mesh."""
    del stack  # nothing to start: the app is shared by every arrangement
    return Target(
        url=f"http://127.0.0.1:{rig.app_port}{_query(rig)}",
        headers=(("Host", SERVICE_HOST),),
    )


def _mesh_ips(index: int = 0) -> tuple[str, str]:
    """A client and a server address in a 127.x.y.0/24 block derived from our pid;
    meshes running side by side (``index``) get different ones."""
    pid = os.getpid()
    prefix = f"127.{200 + (pid >> 8) % 50}.{pid % 256}"
    return f"{prefix}.{2 + 2 * index}", f"{prefix}.{3 + 2 * index}"


_CONFIG = """\
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: {port}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: echo-v1, namespace: default}}
spec: {{address: {ip}, labels: {{app: echo, version: v1}}}}
"""


def _control_plane(rig: Rig, stack: contextlib.ExitStack, work: Path, config_dir: Path) -> int:
    """Start ``pilotfish control-plane`` on ``config_dir``; return its xDS port once ready."""
    xds_port, http_port = free_port(), free_port()
    cp = start_process(
        stack,
        "control-plane",
        [
            str(rig.exe),
            "control-plane",
            "--config",
            str(config_dir),
            "--xds-port",
            str(xds_port),
            "--http-port",
            str(http_port),
            "--bind",
            "127.0.0.1",
            # Its API token in the rig's directory, not in the working directory.
            "--api-token-file",
            str(work / "api-token"),
        ],
        work,
    )
    url = f"http://127.0.0.1:{http_port}/ready"
    wait_for("the control plane", answers_200(url), rig.params.ready_deadline_s, (cp,))
    return xds_port


@dataclass(frozen=True, slots=True)
class _Agent:
    process: Process
    health_port: int
    work_dir: Path


def _agent(
    rig: Rig,
    stack: contextlib.ExitStack,
    work: Path,
    name: str,
    ip: str,
    xds_port: int,
    labels: dict[str, str],
    app_ports: dict[int, int],
) -> _Agent:
    health_port = free_port()
    work_dir = work / f"agent-{name}"
    launch = AgentLaunch(
        name=name,
        namespace="default",
        ip=(ip,),
        interception="none",
        xds_address=f"127.0.0.1:{xds_port}",
        admin_port=free_port(),
        health_port=health_port,
        stats_port=0,
        concurrency=rig.params.envoy_concurrency,
        drain_duration=1,
        label=tuple(labels.items()),
        app_port=tuple(app_ports.items()),
        work_dir=str(work_dir),
    )
    command = launch.to_argv([str(rig.exe), "agent"])
    return _Agent(start_process(stack, f"agent-{name}", command, work), health_port, work_dir)


# Mesh-wide Telemetry (root namespace) turning off what the mesh adds by default:
# Istio's metrics, span reporting and access logs.
TELEMETRY_OFF = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - overrides:
    - match: {metric: ALL_METRICS}
      disabled: true
  tracing:
  - randomSamplingPercentage: 0
    disableSpanReporting: true
  accessLogging:
  - disabled: true
"""


def explicit_sidecars(
    rig: Rig,
    stack: contextlib.ExitStack,
    *,
    telemetry: bool = True,
    mesh: str = "",
    index: int = 0,
    extra_files: dict[str, str] | None = None,
) -> Target:
    """Client sidecar -> server sidecar -> app, apps dialing the proxy (no interception).

    With ``telemetry`` false a root-namespace Telemetry turns the mesh's default
    metrics, tracing and access logs off, so the pair of runs prices them.
    ``extra_files`` (name -> YAML) join the config; meshes that run side by side
    need their own ``mesh`` (work directory) and ``index`` (addresses).
    """
    client_ip, server_ip = _mesh_ips(index)
    work = rig.work / mesh if mesh else rig.work
    work.mkdir(exist_ok=True)
    config_dir = work / ("config" if telemetry else "config-no-telemetry")
    config_dir.mkdir(exist_ok=True)
    (config_dir / "echo.yaml").write_text(_CONFIG.format(port=SERVICE_PORT, ip=server_ip))
    if not telemetry:
        (config_dir / "telemetry-off.yaml").write_text(TELEMETRY_OFF)
    for name, text in (extra_files or {}).items():
        (config_dir / name).write_text(text)
    xds_port = _control_plane(rig, stack, work, config_dir)
    server = _agent(
        rig,
        stack,
        work,
        "echo-v1",
        server_ip,
        xds_port,
        {"app": "echo", "version": "v1"},
        {SERVICE_PORT: rig.app_port},
    )
    client = _agent(rig, stack, work, "client", client_ip, xds_port, {"app": "client"}, {})
    agents = (server, client)
    processes = tuple(a.process for a in agents)
    deadline = rig.params.ready_deadline_s
    for agent in agents:
        url = f"http://127.0.0.1:{agent.health_port}/healthz/ready"
        wait_for(
            f"{agent.process.name} /healthz/ready",
            answers_200(url),
            deadline,
            processes,
        )
    pids: list[tuple[str, int]] = []
    for role, agent in (("client", client), ("server", server)):
        pid_file = agent.work_dir / "envoy.pid"
        wait_for(f"{pid_file}", partial(has_envoy, agent.work_dir), deadline, processes)
        pid = envoy_pid(agent.work_dir)
        if pid is None:  # exited between the two reads
            raise BenchmarkError(f"Envoy of {agent.process.name} is gone:\n{agent.process.tail()}")
        pids.append((role, pid))
    rig.log(f"sidecars ready: client {client_ip}, server {server_ip}")
    return Target(
        url=f"http://{client_ip}:{OUTBOUND_PORT}{_query(rig)}",
        headers=(("Host", SERVICE_HOST),),
        proxies=tuple(pids),
    )


ARRANGEMENTS: tuple[tuple[str, Arrangement], ...] = (
    ("direct", direct),
    ("sidecars", explicit_sidecars),
    ("sidecars_no_telemetry", partial(explicit_sidecars, telemetry=False)),
    ("direct_pods", direct_pods),
    ("transparent_sidecars", transparent_sidecars),
)
# (baseline, via): the latency each arrangement adds over its baseline, when both ran.
ADDED_PAIRS: tuple[tuple[str, str], ...] = (
    ("direct", "sidecars"),
    ("direct", "sidecars_no_telemetry"),
    ("direct", "transparent_sidecars"),
    ("direct_pods", "transparent_sidecars"),
)


# --- measuring ----------------------------------------------------------------------------

LoadRunner = Callable[[LoadSpec], LoadResult]


def _load_runner(
    params: DataplaneParams, log: Callable[[str], None]
) -> tuple[LoadRunner, dict[str, Any]]:
    """The generator to use: hey when asked or available, else the Python fallback."""
    if params.load_generator not in ("auto", "hey", "python"):
        raise BenchmarkError(f"unknown load generator {params.load_generator!r}")
    if params.load_generator != "python":
        hey = find_hey(install=True, log=log)
        if hey is not None:
            return (lambda spec: run_hey(spec, hey)), {"name": "hey", "path": hey}
        if params.load_generator == "hey":
            raise BenchmarkError("hey is not installed and could not be installed")
        log("hey unavailable: using the Python open-loop generator")
    return run_python_load, {"name": "python", "path": None}


def _probe(rig: Rig, target: Target) -> None:
    """Wait until the target answers 200 with a body of exactly the configured size."""
    size = rig.params.response_bytes

    def ok() -> bool:
        if target.exec_prefix:
            status, length = fetch_in(target.exec_prefix, target.url, target.headers, 2.0)
        else:
            status, body = http_get(target.url, target.headers)
            length = len(body)
        return status == 200 and length == size

    wait_for(f"200 with {size} bytes from {target.url}", ok, rig.params.ready_deadline_s)


def _proxy_usage(
    target: Target, cpu_before: dict[str, float | None], window_s: float
) -> dict[str, dict[str, Any]]:
    """CPU over the window and memory at its end, per proxy on the target's path.

    ``alive_at_end`` false means that Envoy exited (an agent restart gives a new
    pid): its numbers cover only part of the window, or are missing.
    """
    usage: dict[str, dict[str, Any]] = {}
    for role, pid in target.proxies:
        before, after = cpu_before.get(role), cpu_seconds(pid)
        cpu = None if before is None or after is None else after - before
        usage[role] = {
            "pid": pid,
            "alive_at_end": after is not None,
            "cpu_s": cpu,
            "cpu_cores": None if cpu is None else cpu / window_s,
            "rss_mib": rss_mib(pid),
            "peak_rss_mib": peak_rss_mib(pid),
        }
    return usage


def _measure(rig: Rig, target: Target, run_load: LoadRunner, app_pid: int) -> dict[str, Any]:
    """Probe, warm up (discarded), then the measured run with the proxies' and app's usage."""
    params = rig.params
    _probe(rig, target)
    spec = LoadSpec(
        url=target.url,
        headers=target.headers,
        rate=params.rate,
        connections=params.connections,
        duration_s=params.warmup_s,
        exec_prefix=target.exec_prefix,
    )
    run_load(spec)  # warm-up: connections, caches, Envoy's worker threads; discarded
    spec = replace(spec, duration_s=params.duration_s)
    app_pid = target.app_pid or app_pid
    cpu_before = {role: cpu_seconds(pid) for role, pid in target.proxies}
    app_before = cpu_seconds(app_pid)
    started = time.monotonic()
    result = run_load(spec)
    window = time.monotonic() - started
    proxies = _proxy_usage(target, cpu_before, window)
    app_after = cpu_seconds(app_pid)
    out = result.as_dict()
    out["url"] = target.url
    out["window_s"] = window
    out["proxies"] = proxies
    out["app_cpu_cores"] = (
        None if app_before is None or app_after is None else (app_after - app_before) / window
    )
    return out


def _added_latency(arrangements: dict[str, Any], base: str, via: str) -> dict[str, float | None]:
    lat_base = (arrangements.get(base) or {}).get("latency_ms") or {}
    lat_via = (arrangements.get(via) or {}).get("latency_ms") or {}
    added: dict[str, float | None] = {}
    for key in ("p50", "p90", "p99"):
        a, b = lat_base.get(key), lat_via.get(key)
        added[key] = None if a is None or b is None else round(b - a, 3)
    return added


# Targets for what telemetry may cost (reported, never enforced).
TELEMETRY_LATENCY_RATIO_TARGET = 1.1
TELEMETRY_RSS_MIB_TARGET = 10.0


def telemetry_cost(arrangements: dict[str, Any]) -> dict[str, Any]:
    """Telemetry on (``sidecars``: metrics and 1 % tracing, the defaults) against
    off (``sidecars_no_telemetry``), measured in the same run: the ratio of the
    latency each adds over ``direct``, and each proxy's extra resident memory."""
    on, off = arrangements.get("sidecars") or {}, arrangements.get("sidecars_no_telemetry") or {}
    if "latency_ms" not in on or "latency_ms" not in off:
        return {}
    added_on = _added_latency(arrangements, "direct", "sidecars")
    added_off = _added_latency(arrangements, "direct", "sidecars_no_telemetry")
    ratio: dict[str, float | None] = {}
    for key in ("p50", "p90", "p99"):
        a, b = added_on.get(key), added_off.get(key)
        ratio[key] = None if a is None or b is None or b <= 0 else round(a / b, 3)
    rss: dict[str, float | None] = {}
    for role in ("client", "server"):
        a = (on.get("proxies") or {}).get(role, {}).get("rss_mib")
        b = (off.get("proxies") or {}).get(role, {}).get("rss_mib")
        rss[role] = None if a is None or b is None else round(a - b, 2)
    return {
        "added_latency_ratio": ratio,
        "extra_rss_mib": rss,
        "targets": {
            "added_latency_ratio": TELEMETRY_LATENCY_RATIO_TARGET,
            "extra_rss_mib": TELEMETRY_RSS_MIB_TARGET,
        },
    }


def run_dataplane(
    params: DataplaneParams,
    log: Callable[[str], None] = print,
    executable: Path | None = None,
    arrangements: tuple[tuple[str, Arrangement], ...] = ARRANGEMENTS,
) -> dict[str, Any]:
    """Measure every arrangement in order; returns parameters and numbers (JSON-ready).

    Never raises for a run that cannot go on: ``error`` says why, and the
    arrangements measured before are kept.
    """
    exe = executable or pilotfish_executable()
    out: dict[str, Any] = {
        "parameters": asdict(params) | {"executable": str(exe), "service_host": SERVICE_HOST},
        "arrangements": {},
        "reference": REFERENCE,
    }
    with tempfile.TemporaryDirectory(prefix="pilotfish-dataplane-") as tmp:
        try:
            _scenario(params, exe, Path(tmp), out, log, arrangements)
        except (BenchmarkError, RuntimeError) as exc:
            out["error"] = str(exc)
    measured = {n for n, a in out["arrangements"].items() if "skipped" not in a}
    out["added_latency"] = {
        f"{via} - {base}": _added_latency(out["arrangements"], base, via)
        for base, via in ADDED_PAIRS
        if base in measured and via in measured
    }
    if "sidecars - direct" in out["added_latency"]:  # kept for earlier readers of the JSON
        out["added_latency_ms"] = out["added_latency"]["sidecars - direct"]
    out["telemetry_cost"] = telemetry_cost(out["arrangements"])
    failed = {n: a.get("failed") for n, a in out["arrangements"].items() if a.get("failed")}
    out["all_ok"] = not failed and "error" not in out
    return out


def _scenario(
    params: DataplaneParams,
    exe: Path,
    work: Path,
    out: dict[str, Any],
    log: Callable[[str], None],
    arrangements: tuple[tuple[str, Arrangement], ...],
) -> None:
    if not exe.exists():
        raise BenchmarkError(f"{exe} not found: is pilotfish installed in this venv?")
    run_load, generator = _load_runner(params, log)
    out["load_generator"] = generator
    with contextlib.ExitStack() as shared:
        app_port, app_pid = _start_app(shared, work, params.ready_deadline_s)
        rig = Rig(exe=exe, work=work, params=params, app_port=app_port, log=log)
        for name, arrangement in arrangements:
            log(f"{name}: starting")
            try:
                with contextlib.ExitStack() as own:
                    target = arrangement(rig, own)
                    log(f"{name}: warm-up {params.warmup_s:g} s, then {params.duration_s:g} s")
                    out["arrangements"][name] = _measure(rig, target, run_load, app_pid)
            except ArrangementSkipped as exc:
                log(f"{name}: skipped: {exc}")
                out["arrangements"][name] = {"skipped": str(exc)}
                continue
            result = out["arrangements"][name]
            log(
                f"{name}: p50 {result['latency_ms'].get('p50') or float('nan'):.2f} ms, "
                f"{result['ok']}/{result['requests']} ok"
            )
