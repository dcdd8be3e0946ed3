"""Control-plane churn: a steady stream of endpoint changes against N services x M proxies.

Theory of operation: the set-up is the scale benchmark's (``bench.controlplane_scale``):
``pilotfish control-plane`` on a generated directory of N services with its mesh
CA, and M simulated sidecars on delta ADS over mTLS, as ``pilotfish up`` serves
them. The simulator is ``bench.churn_sim``, which also tracks endpoint markers
(``bench.churn_markers``). Once the initial push has converged:

1. the writer replaces one service file every ``1 / rate`` seconds for
   ``duration_s`` seconds (``rate * duration_s`` changes, then it stops), each
   change moving one endpoint to the address that marks it. Change ``k`` is
   scheduled at ``start + k / rate`` whatever happened before; a late write is
   recorded, never skipped. Services are written round-robin, so with N services
   a file is rewritten every ``N / rate`` seconds;
2. a sampler polls ``/metrics`` (queued responses, push pending) and
   ``/debug/pushz`` (store and snapshot revisions, proxies that have not ACKed
   what they were sent), and the control plane's CPU and RSS, every
   ``sample_every_s`` seconds;
3. after the last write the benchmark waits (at most ``drain_deadline_s``) until
   every change has reached every proxy that subscribes to its service and the
   control plane reports itself converged with nothing queued.

Convergence of a change runs from its file write (after the rename) to the ACK,
by the last affected proxy, of an EDS response holding it; both are
``time.monotonic()``, one clock for every process. The result holds the
percentiles over all changes and per window of write time, so a control plane
that falls behind shows as a later window slower than the first. Every wait has
a deadline, and the processes are stopped whatever happens.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.ads_tls import issue_client_tls
from bench.churn_markers import change_slot, marker_address, summarize
from bench.config_gen import endpoint_address, generate_config, service_file
from bench.controlplane_scale import (
    BenchmarkError,
    ScaleParams,
    _ControlPlane,
    _Simulator,
    _tail,
    pilotfish_executable,
)
from bench.procstats import cpu_seconds, peak_rss_mib, rss_mib

__all__ = [
    "FULL",
    "QUICK",
    "ChurnParams",
    "churn_table",
    "metric_value",
    "run_churn",
    "window_summaries",
]


@dataclass(frozen=True, slots=True)
class ChurnParams:
    """Sizes, rate and bounds of one churn run."""

    services: int
    proxies: int
    rate: float = 100.0  # endpoint changes per second
    duration_s: float = 60.0
    window_s: float = 10.0  # convergence percentiles per window of write time
    streams_per_channel: int = 50
    deadline_s: float = 120.0  # set-up waits (ready, initial push)
    drain_deadline_s: float = 30.0  # after the last write
    sample_every_s: float = 0.5


FULL = ChurnParams(services=1000, proxies=1000)
QUICK = ChurnParams(services=100, proxies=100, duration_s=10.0, window_s=2.0)


def metric_value(text: str, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] == " ":
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def window_summaries(
    written_at: list[float], convergence: list[float | None], start: float, window_s: float
) -> list[dict[str, Any]]:
    """``summarize`` per window of write time (``[start + i*w, start + (i+1)*w)``)."""
    groups: dict[int, list[float | None]] = {}
    for at, value in zip(written_at, convergence, strict=True):
        groups.setdefault(int((at - start) // window_s), []).append(value)
    return [
        {"from_s": i * window_s, "to_s": (i + 1) * window_s, **summarize(groups[i])}
        for i in sorted(groups)
    ]


_HISTOGRAMS = {
    "snapshots": "pilotfish_snapshot_build_seconds",
    "pushes": "pilotfish_xds_push_seconds",
}


class _Writer:
    """Rewrites service files with one endpoint moved to a change's marker address."""

    def __init__(self, config_dir: Path, services: int) -> None:
        self._dir = config_dir
        self._services = services
        self._texts = {s: service_file(config_dir, s).read_text() for s in range(services)}
        self._addresses: dict[tuple[int, int], str] = {}

    def write(self, k: int) -> None:
        service, endpoint = change_slot(k, self._services)
        old = self._addresses.get((service, endpoint)) or endpoint_address(service, endpoint)
        new = marker_address(k)
        before = self._texts[service]
        text = before.replace(f"address: {old}\n", f"address: {new}\n", 1)
        if text == before:
            raise BenchmarkError(f"endpoint {old} not found in the file of svc-{service}")
        path = service_file(self._dir, service)
        temporary = self._dir / f".{path.name}.tmp"  # hidden: the store skips dot files
        temporary.write_text(text)
        os.replace(temporary, path)
        self._texts[service] = text
        self._addresses[(service, endpoint)] = new


class _Sampler(threading.Thread):
    """Polls the control plane's backlog, CPU and memory until stopped."""

    def __init__(self, cp: _ControlPlane, token: str, every_s: float, origin: float) -> None:
        super().__init__(daemon=True)
        self._cp, self._every, self._origin = cp, every_s, origin
        self._headers = {"Authorization": f"Bearer {token}"}
        self._stop_event = threading.Event()
        self.samples: list[dict[str, Any]] = []
        self.errors = 0

    def _get(self, path: str, auth: bool) -> bytes:
        url = f"http://127.0.0.1:{self._cp.http_port}{path}"
        request = urllib.request.Request(url, headers=self._headers if auth else {})
        with urllib.request.urlopen(request, timeout=10.0) as response:
            return bytes(response.read())

    def sample(self) -> dict[str, Any]:
        began = time.monotonic()
        metrics = self._get("/metrics", auth=False).decode()
        pushz = json.loads(self._get("/debug/pushz", auth=True))
        pid = self._cp.proc.pid
        return {
            "t_s": began - self._origin,
            "queued_responses": metric_value(metrics, "pilotfish_xds_queued_responses"),
            "push_pending": bool(pushz.get("push_pending")),
            "revision_lag": int(pushz["store_revision"]) - int(pushz["snapshot_revision"]),
            "proxies_behind": len(pushz.get("proxies_behind") or ()),
            "converged": bool(pushz.get("converged")),
            # Histograms' running totals: how many snapshots and pushes, and their time.
            **{
                f"{short}_{part}": metric_value(metrics, f"{name}_{part}")
                for short, name in _HISTOGRAMS.items()
                for part in ("count", "sum")
            },
            "cp_cpu_s": cpu_seconds(pid),
            "cp_rss_mib": rss_mib(pid),
            "poll_s": time.monotonic() - began,
        }

    def run(self) -> None:
        while not self._stop_event.is_set():
            began = time.monotonic()
            try:
                self.samples.append(self.sample())
            except (OSError, ValueError, KeyError):
                self.errors += 1
            self._stop_event.wait(max(0.0, self._every - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


def run_churn(
    params: ChurnParams,
    log: Callable[[str], None] = print,
    executable: Path | None = None,
) -> dict[str, Any]:
    """Run the churn scenario once; returns parameters and measurements (``error`` if it
    could not run, with whatever was measured before)."""
    exe = executable or pilotfish_executable()
    out: dict[str, Any] = {
        "parameters": asdict(params)
        | {"executable": str(exe), "protocol": "delta", "tls": "mtls", "endpoints_per_service": 4}
    }
    load_start = os.getloadavg()[0]  # other work on the machine
    with tempfile.TemporaryDirectory(prefix="pilotfish-churn-") as tmp:
        try:
            _scenario(params, exe, Path(tmp), out, log)
        except BenchmarkError as exc:
            out["error"] = str(exc)
    out["load_average_1m"] = {"start": load_start, "end": os.getloadavg()[0]}
    return out


def _scenario(
    params: ChurnParams, exe: Path, work: Path, out: dict[str, Any], log: Callable[[str], None]
) -> None:
    config_dir = work / "config"
    generate_config(config_dir, params.services)
    ca_dir = work / "ca"
    tls_dir = issue_client_tls(ca_dir, work / "sim-tls")
    cp = _ControlPlane(exe, config_dir, work / "controlplane.log", ca_dir)
    out["tls_layout"] = cp.tls_layout
    sim: _Simulator | None = None
    sampler: _Sampler | None = None
    try:
        out["cp_ready_s"] = cp.wait_ready(params.deadline_s)
        scale = ScaleParams(
            services=params.services,
            proxies=params.proxies,
            streams_per_channel=params.streams_per_channel,
            deadline_s=params.deadline_s,
            transports=("mtls",),
            protocols=("delta",),
        )
        sim = _Simulator(
            scale, cp.ads_port, work / "simulator.log", "delta", tls_dir, module="bench.churn_sim"
        )
        sim.expect("started", timeout=60)
        full = sim.expect("full_push", timeout=params.deadline_s + 30)
        out["full_push_s"] = full.get("full_push_s")
        log(f"full push: {full.get('complete')}/{params.proxies} proxies complete")
        if not full.get("converged"):
            raise BenchmarkError(f"initial push did not converge: {full}")
        total = round(params.rate * params.duration_s)
        sim.send({"cmd": "begin", "markers": total})
        begun = sim.expect("begin", timeout=60)
        out["affected_per_change"] = {
            "min": begun.get("expected_min"),
            "max": begun.get("expected_max"),
        }
        writer = _Writer(config_dir, params.services)
        token = (work / "api-token").read_text().strip()
        origin = time.monotonic()
        sampler = _Sampler(cp, token, params.sample_every_s, origin)
        sampler.start()
        cpu_start = cpu_seconds(cp.proc.pid)
        out["cp_rss_mib_at_start"] = rss_mib(cp.proc.pid)
        log(f"writing {total} endpoint changes at {params.rate:g}/s")
        written_at = _write_all(writer, total, params.rate, out)
        last_write = written_at[-1] if written_at else time.monotonic()
        cpu_end = cpu_seconds(cp.proc.pid)
        out["cp_rss_mib_at_end_of_writes"] = rss_mib(cp.proc.pid)
        if cpu_start is not None and cpu_end is not None:
            out["cp_cores_during_writes"] = (cpu_end - cpu_start) / max(last_write - origin, 1e-9)
        out["all_changes_converged_after_s"] = _wait_markers(sim, total, params, last_write)
        settled = out["all_changes_converged_after_s"]
        # Only once every change arrived: before the store has read the last write,
        # /debug/pushz rightly says the control plane is converged (on what it has).
        out["pushz_converged_after_s"] = (
            None
            if settled is None
            else _wait_quiet(sampler, params, last_write - origin, last_write - origin + settled)
        )
        sampler.stop()
        sim.send({"cmd": "markers"})
        markers = sim.expect("markers", timeout=60)
        _results(out, params, markers, written_at, origin, sampler)
    finally:
        if sampler is not None:
            sampler.stop()
        out["cp_cpu_s"] = cpu_seconds(cp.proc.pid)
        out["cp_peak_rss_mib"] = peak_rss_mib(cp.proc.pid)
        if sim is not None:
            out["sim_cpu_s"] = cpu_seconds(sim.proc.pid)
            out["sim_peak_rss_mib"] = peak_rss_mib(sim.proc.pid)
            sim.stop()
        if cp.proc.poll() is not None:
            out["cp_exit_code"] = cp.proc.returncode
            out["cp_log_tail"] = _tail(cp.log_path, 20)
        cp.stop()


def _write_all(writer: _Writer, total: int, rate: float, out: dict[str, Any]) -> list[float]:
    """Write change k at ``start + k / rate``; return each write's monotonic time."""
    written_at: list[float] = []
    start = time.monotonic()
    latest = 0.0
    for k in range(total):
        due = start + k / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        writer.write(k)
        now = time.monotonic()
        written_at.append(now)
        latest = max(latest, now - due)
    span = written_at[-1] - written_at[0] if len(written_at) > 1 else 0.0
    out["writes"] = {
        "changes": total,
        "span_s": span,
        "achieved_rate": (total - 1) / span if span > 0 else None,
        "max_lateness_s": latest,
    }
    return written_at


def _wait_markers(
    sim: _Simulator, total: int, params: ChurnParams, last_write: float
) -> float | None:
    """Poll the simulator until every change reached all its proxies; seconds after the
    last write, or None if some had not by the drain deadline."""
    while True:
        sim.send({"cmd": "progress"})
        progress = sim.expect("progress", timeout=60)
        now = time.monotonic()
        if progress.get("completed") == total:
            return now - last_write
        if now - last_write > params.drain_deadline_s:
            return None
        time.sleep(0.1)


def _wait_quiet(
    sampler: _Sampler, params: ChurnParams, last_write_t: float, from_t: float
) -> float | None:
    """Seconds after the last write of the first sample from ``from_t`` on (sampler
    time) with nothing pending, queued or un-ACKed (``/debug/pushz`` converged), or
    None by the drain deadline."""
    deadline = time.monotonic() + params.drain_deadline_s
    while time.monotonic() < deadline:
        for sample in list(sampler.samples):
            quiet = sample["converged"] and not sample["queued_responses"]
            if sample["t_s"] >= from_t and quiet:
                return float(sample["t_s"] - last_write_t)
        time.sleep(params.sample_every_s / 2)
    return None


def _results(
    out: dict[str, Any],
    params: ChurnParams,
    markers: dict[str, Any],
    written_at: list[float],
    origin: float,
    sampler: _Sampler,
) -> None:
    complete_at: list[float | None] = markers["complete_at"]
    convergence = [
        None if done is None else done - wrote
        for done, wrote in zip(complete_at, written_at, strict=True)
    ]
    out["convergence"] = summarize(convergence)
    windows = window_summaries(written_at, convergence, origin, params.window_s)
    out["convergence_by_window"] = windows
    if windows:
        out["first_window"], out["last_window"] = windows[0], windows[-1]
    counts = markers["count"]
    expected = markers["expected"]
    out["never_converged_examples"] = [
        {"change": k, "acked": counts[k], "affected": expected[k % params.services]}
        for k, v in enumerate(convergence)
        if v is None
    ][:10]
    out["sim_stream_errors"] = markers.get("stream_errors")
    out["sim_first_error"] = markers.get("first_error")
    out["sim_marker_parses"] = markers.get("parses")
    samples = sampler.samples
    out["samples"] = samples
    out["sampler_errors"] = sampler.errors
    during = [s for s in samples if s["t_s"] <= (written_at[-1] - origin if written_at else 0)]
    out["backlog"] = _backlog(during, samples)
    out["work_during_writes"] = _work(during)


def _work(during: list[dict[str, Any]]) -> dict[str, Any]:
    """Snapshots built and pushes planned between the first and last sample of the
    writes, and the seconds they took (from the control plane's histograms)."""
    out: dict[str, Any] = {}
    if len(during) < 2:
        return out
    first, last = during[0], during[-1]
    for short in _HISTOGRAMS:
        for part in ("count", "sum"):
            key = f"{short}_{part}"
            if first.get(key) is not None and last.get(key) is not None:
                out[key if part == "count" else f"{short}_s"] = last[key] - first[key]
    out["span_s"] = last["t_s"] - first["t_s"]
    return out


def _backlog(during: list[dict[str, Any]], samples: list[dict[str, Any]]) -> dict[str, Any]:
    def peak(key: str, rows: list[dict[str, Any]]) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return max(values) if values else None

    return {
        "samples": len(samples),
        "max_queued_responses": peak("queued_responses", samples),
        "max_proxies_behind": peak("proxies_behind", samples),
        "max_revision_lag": peak("revision_lag", samples),
        "push_pending_fraction": (
            sum(1 for s in during if s["push_pending"]) / len(during) if during else None
        ),
        "max_poll_s": peak("poll_s", samples),
        "max_cp_rss_mib": peak("cp_rss_mib", samples),
    }


def _s(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f} s"


def _percentiles(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return " / ".join(_s(summary.get(k)) for k in ("p50_s", "p90_s", "p99_s", "max_s"))


def churn_table(result: dict[str, Any]) -> Table:
    """One row per measure of a churn run (``bench/results/controlplane_churn*.json``)."""
    params = result.get("parameters") or {}
    numbers = result.get("results") or {}
    title = (
        f"control-plane churn: N={params.get('services')} services, "
        f"M={params.get('proxies')} proxies, {params.get('rate')} endpoint changes/s for "
        f"{params.get('duration_s')} s, delta ADS over mTLS"
    )
    table = Table(title=title)
    table.add_column("measure", no_wrap=True)
    table.add_column("value", no_wrap=True)
    table.add_column("detail", no_wrap=True)
    writes = numbers.get("writes") or {}
    conv = numbers.get("convergence") or {}
    backlog = numbers.get("backlog") or {}
    affected = numbers.get("affected_per_change") or {}
    work = numbers.get("work_during_writes") or {}
    rows: list[tuple[str, str, str]] = [
        ("control plane ready", _s(numbers.get("cp_ready_s")), ""),
        ("initial full push", _s(numbers.get("full_push_s")), ""),
        (
            "changes written",
            str(writes.get("changes", "-")),
            f"{(writes.get('achieved_rate') or 0):.1f}/s achieved, latest write "
            f"{_s(writes.get('max_lateness_s'))} behind schedule",
        ),
        (
            "convergence p50 / p90 / p99 / max",
            _percentiles(conv),
            f"proxies per change {affected.get('min')}-{affected.get('max')}",
        ),
        (
            "never converged",
            str(conv.get("never_converged", "-")),
            f"of {conv.get('changes', '-')} (drain deadline {params.get('drain_deadline_s')} s)",
        ),
    ]
    for label, key in (("first window", "first_window"), ("last window", "last_window")):
        window = numbers.get(key)
        if window:
            rows.append(
                (
                    f"{label} p50 / p90 / p99 / max",
                    _percentiles(window),
                    f"changes written {window['from_s']:g}-{window['to_s']:g} s",
                )
            )
    rows += [
        (
            "all changes converged",
            _s(numbers.get("all_changes_converged_after_s")),
            "after the last write",
        ),
        (
            "control plane converged, nothing queued",
            _s(numbers.get("pushz_converged_after_s")),
            "after the last write (/debug/pushz, first sample once all changes arrived)",
        ),
        (
            "queued responses (max)",
            str(backlog.get("max_queued_responses", "-")),
            "pilotfish_xds_queued_responses, all streams",
        ),
        (
            "proxies behind (max)",
            str(backlog.get("max_proxies_behind", "-")),
            "/debug/pushz proxies_behind",
        ),
        (
            "store revisions not yet built (max)",
            str(backlog.get("max_revision_lag", "-")),
            f"push pending in {_fraction(backlog.get('push_pending_fraction'))} of samples",
        ),
        (
            "snapshots built / pushes planned",
            f"{_count(work.get('snapshots_count'))} / {_count(work.get('pushes_count'))}",
            f"taking {_s(work.get('snapshots_s'))} / {_s(work.get('pushes_s'))} of "
            f"{_s(work.get('span_s'))} of writes",
        ),
        (
            "control plane CPU",
            f"{(numbers.get('cp_cores_during_writes') or 0):.2f} cores",
            f"during the writes; {_s(numbers.get('cp_cpu_s'))} in all",
        ),
        (
            "control plane RSS",
            f"{_mib(numbers.get('cp_rss_mib_at_start'))} -> "
            f"{_mib(numbers.get('cp_rss_mib_at_end_of_writes'))}",
            f"start -> end of writes; peak {_mib(numbers.get('cp_peak_rss_mib'))}",
        ),
        (
            "simulator CPU",
            _s(numbers.get("sim_cpu_s")),
            f"peak RSS {_mib(numbers.get('sim_peak_rss_mib'))}",
        ),
    ]
    load = numbers.get("load_average_1m") or {}
    if load:
        rows.append(("load average (1 min)", f"{load['start']:.1f} -> {load['end']:.1f}", ""))
    for row in rows:
        table.add_row(*row)
    if result.get("error"):
        table.add_row("[red]error[/red]", "", str(result["error"]))
    return table


def _count(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f}"


def _mib(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f} MiB"


def _fraction(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.0f} %"
