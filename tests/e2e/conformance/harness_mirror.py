"""Upstream's request-mirror checks, on the conformance echo's logs.

Theory of operation: the echo backend logs every request it answers as
echo-basic does (``Echoing back request made to <path> to client (...)``),
and upstream's mirror tests read the mirrored backend's pod logs for that
line (``ExpectMirroredRequest``). Each mirrored expectation gets a fresh
``gateway-api-conformance-request-id`` query parameter, as upstream's
``AddRequestIDQueryParam`` adds, so a line can only come from this request.
``mirrored`` waits (bounded) until every mirrored backend logged it once.
``mirror_share`` is upstream's percentage check: 500 requests, 10 at a time,
each answered as expected; the mirrored backend's count of them must lie
within 3 binomial standard deviations of the share; a miss is measured
again, up to 5 times, with a new request id. Mirrors reach the backend
asynchronously, so a count is read once it stops changing.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from urllib.parse import urlencode

from cases import Expect
from harness import Sender, check_expect

#: Lines of every pod of a backend (a Deployment name) in its namespace.
LogsOf = Callable[[str], list[str]]

REQUEST_ID = "gateway-api-conformance-request-id"
MIRROR_DEADLINE = 10.0
SHARE_REQUESTS = 500
SHARE_CONCURRENCY = 10
SHARE_STD_DEVS = 3.0
SHARE_MEASUREMENTS = 5
#: How long a mirrored count may keep changing once the requests are answered.
SETTLE_DEADLINE = 10.0


def with_request_id(expect: Expect) -> Expect:
    """``expect`` with a fresh request id on its path (and on the path the backend sees)."""
    extra = urlencode({REQUEST_ID: uuid.uuid4().hex})
    sep = "&" if "?" in expect.path else "?"
    seen = expect.seen_path
    if seen is not None:
        seen = f"{seen}{'&' if '?' in seen else '?'}{extra}"
    return replace(expect, path=f"{expect.path}{sep}{extra}", seen_path=seen)


def _line(path: str) -> str:
    return f"Echoing back request made to {path} to client"


def count_mirrored(logs: list[str], path: str) -> int:
    """How many log lines record a request made to exactly ``path``."""
    return sum(1 for line in logs if _line(path) in line)


def mirrored(logs_of: LogsOf, backends: tuple[str, ...], path: str) -> str | None:
    """Wait until each of ``backends`` logged a request to ``path``; why not, or None."""
    deadline = time.monotonic() + MIRROR_DEADLINE
    missing = list(backends)
    while missing:
        missing = [b for b in missing if not count_mirrored(logs_of(b), path)]
        if not missing:
            return None
        if time.monotonic() >= deadline:
            return f"no mirrored request to {path} in the logs of {missing}"
        time.sleep(0.2)  # a poll pace; the deadline bounds the wait
    return None


def _settled_count(logs_of: LogsOf, backend: str, path: str) -> int:
    """The backend's count of ``path`` once two reads 0.5 s apart agree (bounded)."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    last = count_mirrored(logs_of(backend), path)
    while time.monotonic() < deadline:
        time.sleep(0.5)  # the interval over which the count must not change
        now = count_mirrored(logs_of(backend), path)
        if now == last:
            return now
        last = now
    return last


def mirror_share(
    sender: Sender, expect: Expect, logs_of: LogsOf, backend: str, percent: float
) -> str | None:
    """Upstream's distribution check of a mirror with ``percent``; why it fails, or None."""
    p = percent / 100.0
    want = SHARE_REQUESTS * p
    margin = SHARE_STD_DEVS * math.sqrt(SHARE_REQUESTS * p * (1 - p))
    miss = ""
    for attempt in range(1, SHARE_MEASUREMENTS + 1):
        probe = with_request_id(expect)

        def one(_: int, probe: Expect = probe) -> str | None:
            # Each request must answer as expected (upstream: one success suffices).
            return check_expect(sender, probe, time.monotonic() + MIRROR_DEADLINE, streak_needed=1)

        with ThreadPoolExecutor(SHARE_CONCURRENCY) as pool:
            failures = [why for why in pool.map(one, range(SHARE_REQUESTS)) if why]
        if failures:
            return f"{len(failures)} of {SHARE_REQUESTS} requests failed: {failures[0]}"
        got = _settled_count(logs_of, backend, probe.path)
        if want - margin <= got <= want + margin:
            return None
        miss = (
            f"{backend} logged {got} of {SHARE_REQUESTS} mirrored requests, want "
            f"{want:.0f} +/- {margin:.1f} (measurement {attempt} of {SHARE_MEASUREMENTS})"
        )
    return miss
