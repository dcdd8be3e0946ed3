"""Fixed-rate HTTP load for the data-plane benchmark: ``hey``, or a Python fallback.

Theory of operation: both generators keep ``connections`` keep-alive HTTP/1.1
connections open to one URL and pace requests so the total is ``rate`` per
second, for ``duration_s`` seconds, then report the latency percentiles, the
status codes and transport errors seen, and the achieved rate.

``hey`` (Debian package ``hey``) is preferred: ``-c`` workers, each paced at
``-q rate/c`` per second, for ``-z`` seconds. Its text summary is parsed by
:func:`parse_hey_output`. It prints seconds with four decimals, so its
percentiles have a resolution of 0.1 ms. Its pacing is per worker: a worker
waits for its response before the next tick, and ticks missed meanwhile are
dropped, so once responses take longer than ``c/rate`` seconds the load
becomes closed-loop; the achieved rate shows when that happened.

The fallback (:func:`run_python_load`) is open loop: request ``i`` is due at
``start + i/rate`` whatever happened before, and is queued for the first free
connection. Each request records its due, sent and done timestamps, so it
reports both the service time (sent -> done, comparable to ``hey``) and the
latency from the schedule (due -> done, which includes queueing when the
target falls behind). Every request, and the run as a whole, is bounded by a
timeout; a request that fails is counted as an error and its connection is
reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import resource
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "PERCENTILES",
    "HeyReport",
    "LoadResult",
    "LoadSpec",
    "fetch_in",
    "find_hey",
    "parse_hey_output",
    "percentile",
    "run_hey",
    "run_python_load",
    "summarize",
]

PERCENTILES = (50, 90, 99)
HEY_RESOLUTION_MS = 0.1


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One fixed-rate run: ``rate`` requests/s in total over ``connections``, for a duration.

    ``exec_prefix`` runs the generator inside another context, e.g. ``ip netns exec
    <netns>`` for a pod's network namespace (only ``hey`` supports it).
    """

    url: str
    headers: tuple[tuple[str, str], ...]
    rate: float
    connections: int
    duration_s: float
    request_timeout_s: float = 5.0
    exec_prefix: tuple[str, ...] = ()


@dataclass(slots=True)
class LoadResult:
    """What one run achieved. Latencies in milliseconds, keyed ``p50``, ``p90``, ``p99``."""

    generator: str
    duration_s: float
    requests: int
    status_counts: dict[str, int]
    errors: dict[str, int]
    latency_ms: dict[str, float | None]
    resolution_ms: float | None
    generator_cpu_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        """Responses with status 200."""
        return self.status_counts.get("200", 0)

    @property
    def failed(self) -> int:
        """Requests that did not get a 200: other statuses plus transport errors."""
        return self.requests - self.ok + sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        duration = self.duration_s or math.nan
        return {
            "generator": self.generator,
            "duration_s": self.duration_s,
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "achieved_rps": self.requests / duration if self.duration_s else None,
            "ok_rps": self.ok / duration if self.duration_s else None,
            "status_counts": dict(self.status_counts),
            "errors": dict(self.errors),
            "latency_ms": dict(self.latency_ms),
            "resolution_ms": self.resolution_ms,
            "generator_cpu_s": self.generator_cpu_s,
            **self.extra,
        }


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of ascending ``sorted_values``; None when empty.

    The smallest value with at least ``pct`` percent of the values at or below it.
    """
    if not sorted_values:
        return None
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {pct}")
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def summarize(latencies_s: Sequence[float]) -> dict[str, float | None]:
    """``p50``/``p90``/``p99`` of latencies given in seconds, in milliseconds."""
    ordered = sorted(latencies_s)
    out: dict[str, float | None] = {}
    for pct in PERCENTILES:
        value = percentile(ordered, pct)
        out[f"p{pct}"] = None if value is None else value * 1000.0
    return out


# --- hey ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeyReport:
    """The numbers of one ``hey`` text summary (seconds, as printed)."""

    total_s: float | None
    requests_per_s: float | None
    percentiles_s: dict[int, float]
    status_counts: dict[int, int]
    errors: dict[str, int]


_TOTAL = re.compile(r"^\s*Total:\s+([\d.]+) secs", re.MULTILINE)
_RPS = re.compile(r"^\s*Requests/sec:\s+([\d.]+)", re.MULTILINE)
_PCT = re.compile(r"^\s*(\d+)% in ([\d.]+) secs\s*$")
_STATUS = re.compile(r"^\s*\[(\d+)\]\s+(\d+) responses\s*$")
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.*?)\s*$")


def parse_hey_output(text: str) -> HeyReport:
    """Parse hey's default text summary.

    hey prints ``0% in 0.0000 secs`` for a percentile it has no sample for; such
    lines are skipped, so a missing percentile is absent from ``percentiles_s``.
    """
    total = _TOTAL.search(text)
    rps = _RPS.search(text)
    percentiles: dict[int, float] = {}
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    section = ""
    for line in text.splitlines():
        if line and not line[0].isspace():
            section = line.strip().rstrip(":")
            continue
        if section == "Latency distribution":
            match = _PCT.match(line)
            if match and int(match.group(1)) > 0:
                percentiles[int(match.group(1))] = float(match.group(2))
        elif section == "Status code distribution":
            match = _STATUS.match(line)
            if match:
                statuses[int(match.group(1))] = int(match.group(2))
        elif section == "Error distribution":
            match = _ERROR.match(line)
            if match:
                message = match.group(2)
                errors[message] = errors.get(message, 0) + int(match.group(1))
    return HeyReport(
        total_s=float(total.group(1)) if total else None,
        requests_per_s=float(rps.group(1)) if rps else None,
        percentiles_s=percentiles,
        status_counts=statuses,
        errors=errors,
    )


def find_hey(install: bool, log: Any = print) -> str | None:
    """Path of ``hey``; when missing, root and ``install``, try ``apt-get install -y hey``."""
    found = shutil.which("hey")
    if found or not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    log("hey not found: apt-get install -y hey")
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "hey"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"apt-get install hey failed: {exc}")
    return shutil.which("hey")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_hey(spec: LoadSpec, hey: str) -> LoadResult:
    """Run ``hey`` once for ``spec``; raises RuntimeError if it fails or overruns.

    hey's CPU time comes from the change in reaped children's usage around the run
    (the benchmark's other children are still running then, so are not counted);
    ``ip netns exec`` execs hey in place, so a prefix of it does not change that.
    """
    command = [
        *spec.exec_prefix,
        hey,
        "-z",
        f"{spec.duration_s:g}s",
        "-q",
        f"{spec.rate / spec.connections:g}",
        "-c",
        str(spec.connections),
        "-t",
        f"{max(1, math.ceil(spec.request_timeout_s))}",
    ]
    for name, value in spec.headers:
        # hey sends -H "Host: ..." as a header Go ignores; -host sets the request's host.
        command += ["-host", value] if name.lower() == "host" else ["-H", f"{name}: {value}"]
    command.append(spec.url)
    # No proxy variables: the load goes straight to the URL.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    cpu_before = _children_cpu_s()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=spec.duration_s + spec.request_timeout_s + 30,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"hey did not finish within {exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"hey exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    report = parse_hey_output(done.stdout)
    if report.total_s is None:
        raise RuntimeError(f"unrecognised hey output:\n{done.stdout[-1000:]}")
    latency: dict[str, float | None] = {
        f"p{pct}": (report.percentiles_s[pct] * 1000.0 if pct in report.percentiles_s else None)
        for pct in PERCENTILES
    }
    return LoadResult(
        generator="hey",
        duration_s=report.total_s,
        requests=sum(report.status_counts.values()),
        status_counts={str(code): n for code, n in sorted(report.status_counts.items())},
        errors=report.errors,
        latency_ms=latency,
        resolution_ms=HEY_RESOLUTION_MS,
        generator_cpu_s=_children_cpu_s() - cpu_before,
        extra={"hey_requests_per_s": report.requests_per_s},
    )


# A GET from inside another context (a pod's netns): prints "<status> <body length>".
_FETCH = r"""
import sys, urllib.error, urllib.request
url, timeout, headers = sys.argv[1], float(sys.argv[2]), dict(a.split(":", 1) for a in sys.argv[3:])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        print(r.status, len(r.read()))
except urllib.error.HTTPError as e:
    print(e.code, len(e.read()))
"""


def fetch_in(
    exec_prefix: Sequence[str], url: str, headers: Sequence[tuple[str, str]], timeout: float
) -> tuple[int, int]:
    """GET ``url`` from a Python started with ``exec_prefix``; returns (status, body length).

    Raises OSError when the request fails (the child's last error line says why).
    """
    argv = [*exec_prefix, sys.executable, "-c", _FETCH, url, f"{timeout:g}"]
    argv += [f"{name}:{value}" for name, value in headers]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"GET {url} did not finish in {exc.timeout:g} s") from exc
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) != 2:
        raise OSError(f"GET {url}: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return int(fields[0]), int(fields[1])


# --- Python open-loop fallback -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sample:
    due: float
    sent: float
    done: float
    status: int


def _request_bytes(spec: LoadSpec, host: str, target: str) -> bytes:
    headers = dict(spec.headers)
    lines = [f"GET {target} HTTP/1.1"]
    if not any(k.lower() == "host" for k in headers):
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; returns its status and whether the server closes."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() == "close"


async def _open_loop(spec: LoadSpec) -> tuple[list[_Sample], Counter[str], int, float]:
    parts = urlsplit(spec.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = _request_bytes(spec, parts.netloc, target)
    total = int(spec.rate * spec.duration_s)
    queue: asyncio.Queue[float] = asyncio.Queue()
    samples: list[_Sample] = []
    errors: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def dispatch() -> None:
        for i in range(total):
            due = start + i / spec.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(due)

    async def worker() -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                due = await queue.get()
                sent = loop.time()
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(
                            asyncio.open_connection(host, port), spec.request_timeout_s
                        )
                    reader, writer = conn
                    writer.write(request)
                    status, closing = await asyncio.wait_for(
                        _read_response(reader), spec.request_timeout_s
                    )
                    samples.append(_Sample(due, sent, loop.time(), status))
                    if closing:
                        writer.close()
                        conn = None
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors[type(exc).__name__] += 1
                    if conn is not None:
                        conn[1].close()
                    conn = None
                finally:
                    queue.task_done()
        finally:
            if conn is not None:
                conn[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(spec.connections)]
    try:
        await dispatch()
        # Whatever is still queued after the schedule plus one request timeout is unsent.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.join(), spec.request_timeout_s + 1)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    # Achieved rate over the span the requests took: first due until the last answer.
    elapsed = max((s.done for s in samples), default=start + spec.duration_s) - start
    return samples, errors, queue.qsize(), elapsed


def run_python_load(spec: LoadSpec) -> LoadResult:
    """Run the open-loop fallback generator once for ``spec`` in this process."""
    if spec.exec_prefix:
        raise ValueError("the Python generator runs in this process: it takes no exec_prefix")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    samples, errors, unsent, elapsed = asyncio.run(_open_loop(spec))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if unsent:
        errors["not sent (target fell behind)"] += unsent
    statuses = Counter(str(s.status) for s in samples)
    return LoadResult(
        generator="python",
        duration_s=elapsed,
        requests=len(samples),
        status_counts=dict(sorted(statuses.items())),
        errors=dict(errors),
        latency_ms=summarize([s.done - s.sent for s in samples]),
        resolution_ms=None,
        generator_cpu_s=usage.ru_utime + usage.ru_stime - cpu_before,
        extra={"latency_from_schedule_ms": summarize([s.done - s.due for s in samples])},
    )
