"""Fixed-rate HTTP load with microsecond latencies: ``wrk`` paced by a Lua script.

Theory of operation: ``hey`` prints latencies to 0.1 ms and adds its own Go
client's work (about half a millisecond at 1000 rps here) to every one, which
is as large as the difference the telemetry A/B looks for. ``wrk`` (Debian
package ``wrk``) is a small C client that times each request itself to the
microsecond, but runs closed loop. ``wrk_paced.lua`` (beside this file) puts it
on a fixed schedule: ``-t N -c N`` gives every connection its own wrk thread and
Lua state, and the script's ``delay()`` holds each request until the
connection's next slot (connections staggered within the interval, no slot
dropped when one falls behind), so every target gets the same offered load
whatever its latency. At the end the script prints wrk's latency histogram
(one line per microsecond value seen), which :class:`Histogram` keeps: any
percentile, and any order statistic for resampling, comes from it exactly.
wrk corrects the histogram for coordinated omission itself (a request slower
than twice a connection's interval also counts the slots it held up), so
``Histogram.count`` can exceed the requests answered; that moves only the tail.
Errors are wrk's: connect, read, write, timeout, and answers with a status of
400 or more.

Every run is bounded: wrk's own ``-d`` and ``--timeout``, and a subprocess
timeout beyond them.
"""

from __future__ import annotations

import bisect
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PACED_SCRIPT", "Histogram", "PacedRun", "find_debian_tool", "parse_paced", "run_paced"]

PACED_SCRIPT = Path(__file__).with_name("wrk_paced.lua")


@dataclass(frozen=True, slots=True)
class Histogram:
    """Latencies as ascending distinct values (µs) with their counts."""

    values_us: tuple[int, ...]
    cumulative: tuple[int, ...]  # cumulative[i] = samples <= values_us[i]

    @classmethod
    def of(cls, pairs: Sequence[tuple[int, int]]) -> Histogram:
        values, cumulative, total = [], [], 0
        for value, count in sorted(pairs):
            if count > 0:
                total += count
                values.append(value)
                cumulative.append(total)
        return cls(tuple(values), tuple(cumulative))

    @property
    def count(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0

    def at_rank(self, rank: int) -> int:
        """The ``rank``-th smallest sample (1-based, clamped to the samples)."""
        if not self.cumulative:
            raise ValueError("empty histogram")
        rank = min(max(rank, 1), self.count)
        return self.values_us[bisect.bisect_left(self.cumulative, rank)]

    def percentile_us(self, pct: float) -> int:
        """Nearest-rank percentile."""
        return self.at_rank(math.ceil(pct / 100 * self.count))

    def mean_us(self) -> float:
        total, below = 0, 0
        for value, cum in zip(self.values_us, self.cumulative, strict=True):
            total += value * (cum - below)
            below = cum
        return total / self.count


@dataclass(slots=True)
class PacedRun:
    """What one paced wrk run saw."""

    histogram: Histogram
    requests: int
    duration_s: float
    errors: dict[str, int] = field(default_factory=dict)


_ERROR_NAMES = ("connect", "read", "write", "status", "timeout")


def parse_paced(text: str) -> PacedRun:
    """Parse the ``pilotfish-*`` lines ``wrk_paced.lua`` prints; ValueError if absent."""
    pairs: list[tuple[int, int]] = []
    requests, duration_us, errors = None, 0, {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        numbers = rest.split()
        if kind == "pilotfish-latency":
            pairs.append((int(numbers[0]), int(numbers[1])))
        elif kind == "pilotfish-requests":
            requests, duration_us = int(numbers[0]), int(numbers[1])
        elif kind == "pilotfish-errors":
            errors = {name: int(n) for name, n in zip(_ERROR_NAMES, numbers, strict=True)}
    if requests is None or not pairs:
        raise ValueError(f"no latencies in wrk's output:\n{text[-500:]}")
    return PacedRun(Histogram.of(pairs), requests, duration_us / 1e6, errors)


def run_paced(
    wrk: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    rate: float,
    connections: int,
    duration_s: float,
    request_timeout_s: float = 2.0,
) -> PacedRun:
    """``rate`` requests/s in total over ``connections`` for ``duration_s``; RuntimeError
    when wrk fails or answers nothing."""
    interval_us = connections / rate * 1e6
    command = [wrk, "-t", str(connections), "-c", str(connections), "-d", f"{duration_s:g}s"]
    command += ["--timeout", f"{request_timeout_s:g}s", "-s", str(PACED_SCRIPT)]
    for name, value in headers:
        command += ["-H", f"{name}: {value}"]
    command += [url, "--", f"{interval_us:.1f}", str(connections)]
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=duration_s + request_timeout_s + 30,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"wrk did not finish within {exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    try:
        return parse_paced(done.stdout)
    except ValueError as exc:
        raise RuntimeError(f"{exc}{done.stderr[-500:]}") from exc


def find_debian_tool(
    command: str, package: str, install: bool, log: Callable[[str], object] = print
) -> str | None:
    """Path of ``command``; when missing, root and ``install``, ``apt-get install`` it."""
    found = shutil.which(command)
    if found or not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    log(f"{command} not found: apt-get install -y {package}")
    try:
        subprocess.run(
            ["apt-get", "install", "-y", package],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"apt-get install {package} failed: {exc}")
    return shutil.which(command)
