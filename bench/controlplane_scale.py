"""Control-plane scale: M simulated sidecars on real ADS streams against N services.

Theory of operation: the control plane runs as a user runs it
(``pilotfish control-plane --config DIR ...``) on a generated config directory
(``bench.config_gen``); the simulator (``bench.ads_sim``) runs as a second process
and talks JSON lines with this one. Three things are timed:

1. the initial full push, from the simulator's first connect attempt until every
   stream has ACKed CDS, EDS, LDS and RDS;
2. a VirtualService edit (weights 90/10 -> 50/50 in one file): from the file write
   to the last ACK of the new RDS by every proxy that received one;
3. an endpoint change (one WorkloadEntry address in another service's file): from
   the file write to the last ACK of the new EDS; ``endpoint_changes`` of them one
   after another, each in another file (the first is the headline number, the
   median of all is reported beside it).

The scenario runs once per variant (``ScaleParams.transports`` x ``protocols``),
each against a fresh control plane, then at the service counts of
``ScaleParams.curve`` for the first (headline) variant. Over ``mtls`` the control
plane runs its mesh CA and the simulator connects to the xDS mTLS port presenting
a certificate issued by that CA (``bench.ads_tls``), as sidecars in ``pilotfish
up`` do; over ``plaintext`` it uses the plain-text port. A ``pilotfish``
command from before the mTLS port existed (no ``--xds-mtls-port``) serves mTLS
xDS on ``--secure-port`` instead, so the same run measures it too
(``tls_layout`` in the results says which).

The write time here and the ACK times in the simulator are both
``time.monotonic()``, one system-wide clock on Linux. Control-plane CPU seconds and
peak RSS come from ``/proc`` just before it is stopped. Every wait has a deadline,
and both processes are killed whatever happens. Slowness is reported, never raised.
"""

from __future__ import annotations

import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from bench.ads_tls import issue_client_tls
from bench.config_gen import endpoint_address, generate_config, write_service
from bench.procstats import cpu_seconds, peak_rss_mib
from pilotfish.runtime.ports import free_port as _free_port

__all__ = [
    "FULL",
    "PROTOCOLS",
    "QUICK",
    "TARGETS",
    "TRANSPORTS",
    "BenchmarkError",
    "ScaleParams",
    "pilotfish_executable",
    "run_scale",
    "variant_name",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
# The targets at N=1000 x M=1000 over mTLS and delta (what ``pilotfish up`` runs).
TARGETS = {"full_push_s": 3.0, "vs_edit_s": 0.5, "endpoint_change_s": 0.25, "peak_rss_mib": 400.0}
TRANSPORTS = ("mtls", "plaintext")
PROTOCOLS = ("delta", "sotw")


class BenchmarkError(RuntimeError):
    """The benchmark could not run (as opposed to: it ran and was slow)."""


@dataclass(frozen=True, slots=True)
class ScaleParams:
    """Sizes and bounds of one run."""

    services: int
    proxies: int
    streams_per_channel: int = 50
    deadline_s: float = 120.0
    quiet_s: float = 1.0
    # Variants measured, each against its own control plane: every transport
    # ("mtls": the xDS mTLS port with mesh-CA client certificates, as sidecars in
    # ``pilotfish up`` connect; "plaintext": the plain-text port) with every ADS
    # protocol. The first variant is the headline: its numbers are also the
    # top-level keys of the result.
    transports: tuple[str, ...] = TRANSPORTS
    protocols: tuple[str, ...] = PROTOCOLS
    # Scaling curve: the headline variant again at these service counts (same M);
    # a count equal to ``services`` reuses the headline run.
    curve: tuple[int, ...] = ()
    # Endpoint changes measured one after another (each in another service's file):
    # the first is ``endpoint_change_s``; their median is ``endpoint_change_median_s``.
    endpoint_changes: int = 5


FULL = ScaleParams(services=1000, proxies=1000, curve=(100, 1000, 5000))
QUICK = ScaleParams(services=100, proxies=100)


def pilotfish_executable() -> Path:
    """The ``pilotfish`` command installed beside the running interpreter."""
    return Path(sys.executable).parent / "pilotfish"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _tls_layout(exe: Path) -> str:
    """``native`` when ``exe`` serves xDS on its own mTLS port, else ``relay`` (xDS over
    mTLS on ``--secure-port``, the CA's port, as before that port existed)."""
    shown = subprocess.run(
        [str(exe), "control-plane", "--help"], capture_output=True, text=True, timeout=60
    )
    return "native" if "--xds-mtls-port" in shown.stdout else "relay"


class _ControlPlane:
    """``pilotfish control-plane`` as a subprocess, logging to a file.

    ``ads_port`` is where the simulator connects: the plain-text xDS port, or with
    ``ca_dir`` the xDS mTLS port (``tls_layout``)."""

    def __init__(
        self, exe: Path, config_dir: Path, log_path: Path, ca_dir: Path | None = None
    ) -> None:
        self.xds_port = _free_port()
        self.http_port = _free_port()
        self.log_path = log_path
        if not exe.exists():
            raise BenchmarkError(f"{exe} not found: is pilotfish installed in this venv?")
        self.ads_port = self.xds_port
        self.tls_layout = ""
        tls_args: list[str] = []
        if ca_dir is not None:
            self.tls_layout = _tls_layout(exe)
            self.ads_port, ca_port = _free_port(), _free_port()
            tls_args = ["--ca-dir", str(ca_dir)]
            if self.tls_layout == "native":
                tls_args += ["--xds-mtls-port", str(self.ads_port), "--secure-port", str(ca_port)]
            else:
                tls_args += ["--secure-port", str(self.ads_port)]
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(exe),
                "control-plane",
                "--config",
                str(config_dir),
                "--xds-port",
                str(self.xds_port),
                "--http-port",
                str(self.http_port),
                "--bind",
                "127.0.0.1",
                # Its API token beside its log, not in the working directory.
                "--api-token-file",
                str(log_path.parent / "api-token"),
                *tls_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, deadline_s: float) -> float:
        """Poll ``GET /ready`` until 200; return seconds waited."""
        started = time.monotonic()
        url = f"http://127.0.0.1:{self.http_port}/ready"
        while time.monotonic() - started < deadline_s:
            if self.proc.poll() is not None:
                raise BenchmarkError(
                    f"control plane exited with {self.proc.returncode}:\n{_tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2.0) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise BenchmarkError(f"control plane not ready after {deadline_s:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class _Simulator:
    """``python -m bench.ads_sim`` as a subprocess: JSON commands in, JSON events out.

    ``module`` runs another simulator speaking the same protocol (``bench.churn_sim``),
    with ``extra_args`` after the common ones."""

    def __init__(
        self,
        params: ScaleParams,
        xds_port: int,
        log_path: Path,
        protocol: str,
        tls_dir: Path | None = None,
        module: str = "bench.ads_sim",
        extra_args: Sequence[str] = (),
    ) -> None:
        self._log: IO[bytes] = log_path.open("wb")
        self.log_path = log_path
        tls_args = [] if tls_dir is None else ["--tls-dir", str(tls_dir)]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--target",
                f"127.0.0.1:{xds_port}",
                "--proxies",
                str(params.proxies),
                "--services",
                str(params.services),
                "--streams-per-channel",
                str(params.streams_per_channel),
                "--full-push-timeout",
                str(params.deadline_s),
                "--protocol",
                protocol,
                *tls_args,
                *extra_args,
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                continue
        self._events.put(None)

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next event named ``event``; raises BenchmarkError on exit, error or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchmarkError(f"simulator: no {event!r} within {timeout:.0f} s")
            try:
                item = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is None:
                raise BenchmarkError(f"simulator exited:\n{_tail(self.log_path)}")
            if item.get("event") == "error":
                raise BenchmarkError(f"simulator: {item.get('message')}")
            if item.get("event") == event:
                return item

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def _measure_change(
    sim: _Simulator,
    params: ScaleParams,
    type_name: str,
    change: Callable[[], object],
) -> dict[str, Any]:
    """Mark, apply ``change`` (a file write), wait for the affected proxies' ACKs."""
    sim.send({"cmd": "mark"})
    sim.expect("mark", timeout=30)
    written_at = time.monotonic()
    change()
    sim.send(
        {
            "cmd": "wait",
            "type": type_name,
            "mode": "affected",
            "timeout": params.deadline_s,
            "quiet": params.quiet_s,
        }
    )
    result = sim.expect("wait", timeout=params.deadline_s + params.quiet_s + 30)
    last_ack = result.get("last_ack_at")
    return {
        "type": type_name,
        "written_at": written_at,
        "converged": bool(result.get("converged")),
        "convergence_s": None if last_ack is None else last_ack - written_at,
        "first_response_s": (
            None
            if result.get("first_response_at") is None
            else result["first_response_at"] - written_at
        ),
        "affected": result.get("affected"),
        "acked": result.get("acked"),
        "changed_per_type": result.get("changed_per_type"),
        "stream_errors": result.get("stream_errors"),
    }


def variant_name(transport: str, protocol: str) -> str:
    """``mtls/delta``, ``plaintext/sotw``, ...: the key of a variant in ``by_variant``."""
    return f"{transport}/{protocol}"


def run_scale(
    params: ScaleParams,
    log: Callable[[str], None] = print,
    executable: Path | None = None,
) -> dict[str, Any]:
    """Run the whole scenario once per variant (transport x protocol), then the curve.

    ``by_variant`` holds each variant's measurements (``mtls/delta``, ...); the first
    variant's are also at the top level (``full_push_s``, ``vs_edit_s``,
    ``endpoint_change_s``, ``peak_rss_mib``, ``cpu_s``, ``protocol``, ``tls``,
    ``services``, ``proxies``), and ``by_protocol`` keeps the first transport's
    runs by protocol for older readers. ``curve`` lists the headline variant at
    each of ``params.curve`` service counts. ``executable`` is the ``pilotfish``
    command to benchmark (default: the one installed beside this interpreter). A
    run that cannot go on (no ``pilotfish`` command, the control plane dies or
    never becomes ready, the simulator exits) does not raise: ``error`` says why,
    and what was measured before is kept.
    """
    exe = executable or pilotfish_executable()
    out: dict[str, Any] = {
        "parameters": asdict(params) | {"endpoints_per_service": 4, "executable": str(exe)}
    }
    by_variant: dict[str, dict[str, Any]] = {}
    for transport in params.transports:
        for protocol in params.protocols:
            name = variant_name(transport, protocol)
            log(f"-- {name}")
            one = _run_protocol(params, exe, protocol, log, tls=transport == "mtls")
            by_variant[name] = one
            if one.get("error") and "error" not in out:
                out["error"] = f"{name}: {one['error']}"
    if by_variant:
        headline = next(iter(by_variant.values()))
        out.update({k: v for k, v in headline.items() if k != "error"})
    out["by_variant"] = by_variant
    first = params.transports[0] if params.transports else ""
    out["by_protocol"] = {
        p: by_variant[variant_name(first, p)]
        for p in params.protocols
        if variant_name(first, p) in by_variant
    }
    out["curve"] = _curve(params, exe, log, by_variant)
    out["targets"] = _targets(out)
    return out


def _curve(
    params: ScaleParams,
    exe: Path,
    log: Callable[[str], None],
    by_variant: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The headline variant at each service count of ``params.curve``: times, memory,
    and both per service (memory per service also as the slope from the point before)."""
    if not params.curve or not params.transports or not params.protocols:
        return []
    transport, protocol = params.transports[0], params.protocols[0]
    headline = by_variant.get(variant_name(transport, protocol))
    points: list[dict[str, Any]] = []
    for services in sorted(set(params.curve)):
        if services == params.services and headline is not None:
            run = headline
        else:
            log(f"-- curve: {variant_name(transport, protocol)} at N={services}")
            sized = replace(params, services=services)
            run = _run_protocol(sized, exe, protocol, log, tls=transport == "mtls")
        point = {
            key: run.get(key)
            for key in (
                "services",
                "proxies",
                "full_push_s",
                "vs_edit_s",
                "endpoint_change_s",
                "endpoint_change_median_s",
                "peak_rss_mib",
                "cpu_s",
                "sim_cpu_s",
                "error",
            )
        }
        full, rss = point["full_push_s"], point["peak_rss_mib"]
        point["full_push_ms_per_service"] = None if full is None else 1000 * full / services
        point["peak_rss_kib_per_service"] = None if rss is None else 1024 * rss / services
        if points and rss is not None and points[-1]["peak_rss_mib"] is not None:
            grown = services - int(points[-1]["services"])
            point["marginal_rss_kib_per_service"] = (
                1024 * (rss - points[-1]["peak_rss_mib"]) / grown
            )
        points.append(point)
    return points


def _run_protocol(
    params: ScaleParams,
    exe: Path,
    protocol: str,
    log: Callable[[str], None],
    *,
    tls: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": protocol, "tls": "mtls" if tls else "plaintext"}
    with tempfile.TemporaryDirectory(prefix="pilotfish-bench-") as tmp:
        try:
            _scenario(params, exe, Path(tmp), out, log, protocol, tls)
        except BenchmarkError as exc:
            out["error"] = str(exc)
    # Stable short keys, as the issue's result file names them.
    out["services"], out["proxies"] = params.services, params.proxies
    out["full_push_s"] = out.get("full_push_s")
    out["vs_edit_s"] = (out.get("vs_edit") or {}).get("convergence_s")
    out["endpoint_change_s"] = (out.get("endpoint_change") or {}).get("convergence_s")
    out["peak_rss_mib"] = out.get("cp_peak_rss_mib")
    out["cpu_s"] = out.get("cp_cpu_s")
    return out


def _scenario(
    params: ScaleParams,
    exe: Path,
    work: Path,
    out: dict[str, Any],
    log: Callable[[str], None],
    protocol: str,
    tls: bool,
) -> None:
    config_dir = work / "config"
    started = time.monotonic()
    generate_config(config_dir, params.services)
    log(f"generated {params.services} service files in {time.monotonic() - started:.1f} s")

    ca_dir = tls_dir = None
    if tls:
        # The CA's root exists before the control plane starts, which then loads it.
        ca_dir = work / "ca"
        tls_dir = issue_client_tls(ca_dir, work / "sim-tls")
    cp = _ControlPlane(exe, config_dir, work / "controlplane.log", ca_dir)
    if tls:
        out["tls_layout"] = cp.tls_layout
    sim: _Simulator | None = None
    phase_cpu: dict[str, float | None] = {}
    out["cp_cpu_s_at"] = phase_cpu
    try:
        out["cp_ready_s"] = cp.wait_ready(params.deadline_s)
        phase_cpu["ready"] = cpu_seconds(cp.proc.pid)
        log(f"control plane ready in {out['cp_ready_s']:.2f} s; starting simulator")

        sim = _Simulator(params, cp.ads_port, work / "simulator.log", protocol, tls_dir)
        sim.expect("started", timeout=60)
        full = sim.expect("full_push", timeout=params.deadline_s + 30)
        full.pop("event", None)
        phase_cpu["full_push"] = cpu_seconds(cp.proc.pid)
        out["full_push"] = full
        out["full_push_s"] = full.get("full_push_s")
        log(f"full push: {full.get('complete')}/{params.proxies} proxies complete")
        if not full.get("converged"):
            out["skipped"] = "initial push did not converge; changes not measured"
            return

        out["vs_edit"] = _measure_change(
            sim, params, "RDS", lambda: write_service(config_dir, 0, weights=(50, 50))
        )
        phase_cpu["vs_edit"] = cpu_seconds(cp.proc.pid)
        log(f"VirtualService edit: {out['vs_edit']['affected']} proxies affected")

        changes = _endpoint_changes(sim, params, config_dir)
        out["endpoint_change"] = changes[0]
        out["endpoint_changes"] = changes
        times = [c["convergence_s"] for c in changes if c["convergence_s"] is not None]
        out["endpoint_change_median_s"] = statistics.median(times) if times else None
        phase_cpu["endpoint_change"] = cpu_seconds(cp.proc.pid)
        log(f"endpoint change: {out['endpoint_change']['affected']} proxies affected")
    finally:
        # Read /proc while both processes still exist; stop them whatever happened.
        out["cp_cpu_s"] = cpu_seconds(cp.proc.pid)
        out["cp_peak_rss_mib"] = peak_rss_mib(cp.proc.pid)
        if sim is not None:
            out["sim_cpu_s"] = cpu_seconds(sim.proc.pid)
            out["sim_peak_rss_mib"] = peak_rss_mib(sim.proc.pid)
            sim.stop()
        if cp.proc.poll() is not None:  # it died before we stopped it: keep its last words
            out["cp_exit_code"] = cp.proc.returncode
            out["cp_log_tail"] = _tail(cp.log_path, 20)
        cp.stop()


def _endpoint_changes(
    sim: _Simulator, params: ScaleParams, config_dir: Path
) -> list[dict[str, Any]]:
    """``params.endpoint_changes`` endpoint moves, each measured on its own, each in
    another service's file than the VirtualService edit's (so only endpoints change)."""
    changes = []
    for k in range(max(params.endpoint_changes, 1)):
        service = (params.services // 2 + k) % params.services
        if service == 0:  # the VirtualService edit's file
            service = 1 % params.services
        moved = {0: endpoint_address(service, 0, block=11 + k)}
        changes.append(
            _measure_change(
                sim,
                params,
                "EDS",
                lambda s=service, m=moved: write_service(config_dir, s, address_overrides=m),
            )
        )
    return changes


def _targets(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target against the headline numbers. Not measured or not converged
    counts as not met: the targets are "every proxy"."""
    converged = {
        "full_push_s": bool((out.get("full_push") or {}).get("converged")),
        "vs_edit_s": bool((out.get("vs_edit") or {}).get("converged")),
        "endpoint_change_s": bool((out.get("endpoint_change") or {}).get("converged")),
        "peak_rss_mib": True,
    }
    checks: dict[str, dict[str, Any]] = {}
    for name, limit in TARGETS.items():
        value = out.get(name)
        met = value is not None and converged[name] and value <= limit
        checks[name] = {"limit": limit, "value": value, "met": met}
    return checks
