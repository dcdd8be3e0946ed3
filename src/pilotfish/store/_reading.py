"""The blocking half of the file store's reading: scan, read, parse.

Everything here runs in a worker thread (``asyncio.to_thread``) and touches no
store state: it takes what the store knew of each file and returns what it
found, which the store folds in on the event loop's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.loader import LoadResult
from pilotfish.store import _scan

__all__ = ["PollResult", "TextLoader", "poll_tree", "read_paths", "rest_after"]

#: Parses the text of one file: ``(text, filename) -> LoadResult``.
TextLoader = Callable[[str, str], LoadResult]

#: The watcher sleeps at least this many times the CPU time its last scan of
#: the tree took, capping the scans' share of one core at about 1 / (1 + _REST_FACTOR).
_REST_FACTOR = 4


@dataclass(frozen=True, slots=True)
class PollResult:
    observation: _scan.Observation
    loads: dict[str, LoadResult]
    scan_cpu_s: float = 0.0  # CPU time of listing and stat-ing (not parsing)


def poll_tree(
    roots: Sequence[Path],
    known: Mapping[str, _scan.Memo],
    load_text: TextLoader,
    max_bytes: int,
) -> PollResult:
    """Blocking part of a poll: scan, read, parse (safe to run in a worker thread)."""
    began = time.thread_time()  # this thread's CPU time: not the GIL's or the loop's
    obs = _scan.observe(roots, known, max_bytes)
    scanned = time.thread_time() - began
    return PollResult(obs, _parse_all(load_text, obs), scanned)


def read_paths(
    paths: set[str],
    known: Mapping[str, _scan.Memo],
    load_text: TextLoader,
    max_bytes: int,
) -> PollResult:
    """Blocking part of reading heard writes: ``poll_tree`` for only ``paths``."""
    obs = _scan.observe_paths(paths, known, max_bytes)
    return PollResult(obs, _parse_all(load_text, obs))


def _parse_all(load_text: TextLoader, obs: _scan.Observation) -> dict[str, LoadResult]:
    """Parse every file of ``obs`` whose bytes changed."""
    return {
        r.found.path: _load(load_text, r.text, r.found.path)
        for r in obs.readings
        if r.parse and r.text is not None
    }


def rest_after(poll_interval: float, scan_cpu_s: float) -> float:
    """Seconds to wait before the next poll: a huge tree must not eat the machine."""
    return max(poll_interval, _REST_FACTOR * scan_cpu_s)


def _load(load_text: TextLoader, text: str, path: str) -> LoadResult:
    try:
        return load_text(text, path)
    except Exception as exc:
        # A loader bug must fail this one file, not every poll of the tree.
        message = f"internal error while loading: {type(exc).__name__}: {exc}"
        return LoadResult((), (Diagnostic(Severity.ERROR, message, SourceRef(path)),))
