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

An arrangement is a function ``(rig, stack) -> Target``: it starts what it needs,
registers the clean-up on ``stack`` (an ExitStack closed right after its
measurement) and returns the URL, the headers and the pids of the proxies on the
path. A further arrangement (say, transparent interception in network
namespaces) is one more such function.

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
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO, Any

from bench.controlplane_scale import BenchmarkError, pilotfish_executable
from bench.loadgen import (
    LoadResult,
    LoadSpec,
    find_hey,
    run_hey,
    run_python_load,
)
from bench.procstats import cpu_seconds, peak_rss_mib, rss_mib

__all__ = [
    "ARRANGEMENTS",
    "FULL",
    "QUICK",
    "REFERENCE",
    "Arrangement",
    "DataplaneParams",
    "Rig",
    "Target",
    "direct",
    "explicit_sidecars",
    "run_dataplane",
]

SERVICE_HOST = "echo:9080"
SERVICE_PORT = 9080
OUTBOUND_PORT = 15001
# Two Envoys with hand-written static config and mTLS, this machine class, 1000 rps,
# 4 connections, concurrency 2 (docs: /work/shared/ARCHITECTURE.md, verified facts).
REFERENCE: dict[str, Any] = {
    "setup": "two Envoys, hand-written static config, mTLS; 1000 rps, 4 connections",
    "direct_ms": {"p50": [0.2, 0.3], "p90": [0.3, 0.4]},
    "sidecars_ms": {"p50": [1.0, 1.2], "p90": [1.2, 1.5]},
    "envoy_rss_mib": 67,
}


@dataclass(frozen=True, slots=True)
class DataplaneParams:
    """Load shape and bounds of one run. ``rate`` is the total over all connections."""

    rate: int
    connections: int
    response_bytes: int
    duration_s: float
    warmup_s: float
    envoy_concurrency: int = 2
    load_generator: str = "auto"  # "auto" (hey, else python), "hey" or "python"
    ready_deadline_s: float = 60.0


FULL = DataplaneParams(rate=1000, connections=4, response_bytes=1024, duration_s=15, warmup_s=2)
QUICK = DataplaneParams(rate=1000, connections=4, response_bytes=1024, duration_s=5, warmup_s=2)


@dataclass(frozen=True, slots=True)
class Rig:
    """What every arrangement shares: the app under test, the tools, a scratch directory."""

    exe: Path
    work: Path
    params: DataplaneParams
    app_port: int
    log: Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Target:
    """Where an arrangement's load goes, and the proxies on the way as (role, Envoy pid)."""

    url: str
    headers: tuple[tuple[str, str], ...]
    proxies: tuple[tuple[str, int], ...] = ()


Arrangement = Callable[[Rig, contextlib.ExitStack], Target]


# --- processes ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Process:
    """A subprocess in its own session (so its children can be stopped too), logging to a file."""

    def __init__(self, name: str, command: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise BenchmarkError(f"cannot start {name}: {exc}") from exc

    def check_alive(self) -> None:
        """Raise if the process has exited (reaping it: its log tail says why)."""
        if self.proc.poll() is not None:
            raise BenchmarkError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (agents drain and stop their Envoy), then SIGKILL to the process group.

        The leader is left unreaped until the group is killed, so its pid, which is
        the group id, cannot have been reused by then.
        """
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            self._exited_unreaped(timeout_s=10)
        # Reaches an Envoy left behind by an agent that did not stop it, nothing else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._log.close()

    def _exited_unreaped(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
                if os.waitid(os.P_PID, self.proc.pid, flags) is not None:
                    return True
            except ChildProcessError:  # already reaped
                return True
            time.sleep(0.02)
        return False


def _start(stack: contextlib.ExitStack, name: str, command: list[str], work: Path) -> _Process:
    process = _Process(name, command, work / f"{name}.log")
    stack.callback(process.stop)
    return process


def _http_get(
    url: str, headers: tuple[tuple[str, str], ...] = (), timeout: float = 2.0
) -> tuple[int, bytes]:
    """GET without any proxy from the environment; HTTP errors are answers, not exceptions."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _answers_200(url: str) -> Callable[[], bool]:
    return lambda: _http_get(url)[0] == 200


def _wait_for(
    what: str, check: Callable[[], bool], deadline_s: float, processes: tuple[_Process, ...] = ()
) -> float:
    """Poll ``check`` until true; return seconds waited. Raises on timeout or a dead process."""
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < deadline_s:
        for process in processes:
            process.check_alive()
        try:
            if check():
                return time.monotonic() - started
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    raise BenchmarkError(f"timed out after {deadline_s:.0f} s waiting for {what} ({last})")


def _start_app(stack: contextlib.ExitStack, work: Path, deadline_s: float) -> tuple[int, int]:
    """Start the echo app on a free loopback port; return (port, pid) once it answers."""
    port = _free_port()
    app = _start(
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
    _wait_for("the echo app", _answers_200(url), deadline_s, (app,))
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


def _mesh_ips() -> tuple[str, str]:
    """A client and a server address in a 127.x.y.0/24 block derived from our pid."""
    pid = os.getpid()
    prefix = f"127.{200 + (pid >> 8) % 50}.{pid % 256}"
    return f"{prefix}.2", f"{prefix}.3"


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


def _control_plane(rig: Rig, stack: contextlib.ExitStack, config_dir: Path) -> int:
    """Start ``pilotfish control-plane`` on ``config_dir``; return its xDS port once ready."""
    xds_port, http_port = _free_port(), _free_port()
    cp = _start(
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
        ],
        rig.work,
    )
    url = f"http://127.0.0.1:{http_port}/ready"
    _wait_for("the control plane", _answers_200(url), rig.params.ready_deadline_s, (cp,))
    return xds_port


@dataclass(frozen=True, slots=True)
class _Agent:
    process: _Process
    health_port: int
    work_dir: Path


def _agent(
    rig: Rig,
    stack: contextlib.ExitStack,
    name: str,
    ip: str,
    xds_port: int,
    labels: dict[str, str],
    app_ports: dict[int, int],
) -> _Agent:
    health_port = _free_port()
    work_dir = rig.work / f"agent-{name}"
    command = [
        str(rig.exe),
        "agent",
        "--name",
        name,
        "--namespace",
        "default",
        "--ip",
        ip,
        "--interception",
        "none",
        "--xds-address",
        f"127.0.0.1:{xds_port}",
        "--admin-port",
        str(_free_port()),
        "--health-port",
        str(health_port),
        "--stats-port",
        "0",
        "--concurrency",
        str(rig.params.envoy_concurrency),
        "--drain-duration",
        "1",
        "--work-dir",
        str(work_dir),
    ]
    for key, value in labels.items():
        command += ["--label", f"{key}={value}"]
    for target, app in app_ports.items():
        command += ["--app-port", f"{target}={app}"]
    return _Agent(_start(stack, f"agent-{name}", command, rig.work), health_port, work_dir)


def _envoy_pid(work_dir: Path) -> int | None:
    """The pid in ``<work_dir>/envoy.pid`` if that process is alive and is Envoy."""
    try:
        pid = int((work_dir / "envoy.pid").read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if "envoy" in comm else None


def _has_envoy(work_dir: Path) -> bool:
    return _envoy_pid(work_dir) is not None


def explicit_sidecars(rig: Rig, stack: contextlib.ExitStack) -> Target:
    """Client sidecar -> server sidecar -> app, apps dialing the proxy (no interception)."""
    client_ip, server_ip = _mesh_ips()
    config_dir = rig.work / "config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "echo.yaml").write_text(_CONFIG.format(port=SERVICE_PORT, ip=server_ip))
    xds_port = _control_plane(rig, stack, config_dir)
    server = _agent(
        rig,
        stack,
        "echo-v1",
        server_ip,
        xds_port,
        {"app": "echo", "version": "v1"},
        {SERVICE_PORT: rig.app_port},
    )
    client = _agent(rig, stack, "client", client_ip, xds_port, {"app": "client"}, {})
    agents = (server, client)
    processes = tuple(a.process for a in agents)
    deadline = rig.params.ready_deadline_s
    for agent in agents:
        url = f"http://127.0.0.1:{agent.health_port}/healthz/ready"
        _wait_for(
            f"{agent.process.name} /healthz/ready",
            _answers_200(url),
            deadline,
            processes,
        )
    pids: list[tuple[str, int]] = []
    for role, agent in (("client", client), ("server", server)):
        pid_file = agent.work_dir / "envoy.pid"
        _wait_for(f"{pid_file}", partial(_has_envoy, agent.work_dir), deadline, processes)
        pid = _envoy_pid(agent.work_dir)
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
        status, body = _http_get(target.url, target.headers)
        return status == 200 and len(body) == size

    _wait_for(f"200 with {size} bytes from {target.url}", ok, rig.params.ready_deadline_s)


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
    )
    run_load(spec)  # warm-up: connections, caches, Envoy's worker threads; discarded
    spec = replace(spec, duration_s=params.duration_s)
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
    if "direct" in out["arrangements"] and "sidecars" in out["arrangements"]:
        out["added_latency_ms"] = _added_latency(out["arrangements"], "direct", "sidecars")
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
            with contextlib.ExitStack() as own:
                target = arrangement(rig, own)
                log(f"{name}: warm-up {params.warmup_s:g} s, then {params.duration_s:g} s")
                out["arrangements"][name] = _measure(rig, target, run_load, app_pid)
            result = out["arrangements"][name]
            log(
                f"{name}: p50 {result['latency_ms'].get('p50') or float('nan'):.2f} ms, "
                f"{result['ok']}/{result['requests']} ok"
            )
