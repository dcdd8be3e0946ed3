"""Feeding fuzz cases through ``analyze`` and the config API, checking invariants.

Theory of operation: each case (``bench.fuzz_corpus``) goes through one entry
point exactly as a user's input would:

- analyze: the body is written to a file and ``analyze_paths`` loads and
  checks it (size check, decoding, parsing within limits, schemas,
  validators, references). An exception is a crash. A file that analyzes
  clean is loaded again and every resource must pass its validator.
- API: a real ``ControlPlane`` (file store on a temporary directory, HTTP on
  loopback port 0) gets a ``PUT`` of the body to the URL of the case's seed
  resource over real HTTP. Any status outside 2xx/4xx, or a body that is not
  JSON, is a violation. After a rejected write the store's revision, its
  objects (by identity) and the files on disk must be exactly as before, and
  a snapshot that had caught up with the store must still be at its revision;
  after an accepted one the stored object must pass its validator. At the
  end, every file the API wrote must load back cleanly to what the store serves.

Outcomes are ``accepted`` or ``rejected:<reason>`` (the most telling error:
a limit, encoding, syntax, duplicate key, unknown field, or validation).
Per case the process's CPU time is measured (``time.process_time``: every
thread of the process, the in-process control plane included), not wall time,
which other processes on a shared machine would stretch; and its memory as the growth of the
process's peak RSS over its RSS before the case: Linux resets the peak
(``VmHWM``) when ``5`` is written to ``/proc/self/clear_refs``, which costs
microseconds where tracemalloc would make the run five times slower. Where
that file cannot be written the growth is not measured (reported as None).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import resource
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.fuzz_corpus import LOOPBACK_JWKS, FuzzCase, Seed
from pilotfish.api.analyze import analyze_paths
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.kinds import plural, resolve_document_kind
from pilotfish.api.loader import load_file
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.api.validation import validate
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings

__all__ = ["PeakMemory", "Tally", "classify", "run_analyze", "run_api", "run_api_sync"]

_LIMIT_REASONS = (
    ("aliases expand to more than", "nodes", "limit:alias_nodes"),
    ("aliases expand to more than", "characters", "limit:alias_chars"),
    ("YAML aliases (limit)", "", "limit:aliases"),
    ("recursive YAML alias", "", "limit:recursive_alias"),
    ("nesting deeper than", "", "limit:depth"),
    ("YAML nodes (limit)", "", "limit:nodes"),
    ("YAML documents (limit)", "", "limit:documents"),
    ("resources (limit)", "", "limit:documents"),
    ("larger than", "bytes (limit)", "limit:bytes"),
)
_PLAIN_REASONS = (
    ("UTF-8", "encoding"),
    ("YAML syntax error", "syntax"),
    ("duplicate key", "duplicate_key"),
    ("unknown field", "unknown_field"),
)
_URL_HOST = re.compile(rb"://([^/:\"'\s]*)")


def classify(messages: Iterable[str]) -> str:
    """The reason of a rejection from its error messages (limits first)."""
    messages = list(messages)
    for needle, also, reason in _LIMIT_REASONS:
        if any(needle in m and also in m for m in messages):
            return reason
    for needle, reason in _PLAIN_REASONS:
        if any(needle in m for m in messages):
            return reason
    return "validation"


@dataclass
class Tally:
    """What one pass saw."""

    cases: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # API only: bodies naming a URL beyond loopback are not sent
    statuses: Counter[int] = field(default_factory=Counter)
    by_mutation: dict[str, Counter[str]] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    max_seconds: float = 0.0
    slowest_case: int = -1
    max_growth_mib: dict[str, float] = field(default_factory=dict)
    max_seconds_by_mutation: dict[str, float] = field(default_factory=dict)
    seconds_by_mutation: Counter[str] = field(default_factory=Counter)
    peak_rss_before_mib: float = 0.0
    peak_rss_after_mib: float = 0.0
    wall_seconds: float = 0.0

    def record(self, case: FuzzCase, outcome: str, seconds: float, growth: float | None) -> None:
        self.cases += 1
        if outcome == "accepted":
            self.accepted += 1
        else:
            self.rejected[outcome.removeprefix("rejected:")] += 1
        self.by_mutation.setdefault(case.mutation, Counter())[outcome] += 1
        if seconds > self.max_seconds:
            self.max_seconds, self.slowest_case = seconds, case.index
        slowest = self.max_seconds_by_mutation.get(case.mutation, 0.0)
        self.max_seconds_by_mutation[case.mutation] = max(slowest, seconds)
        self.seconds_by_mutation[case.mutation] += seconds
        if growth is not None:
            most = self.max_growth_mib.get(case.mutation, 0.0)
            self.max_growth_mib[case.mutation] = max(most, growth)

    @property
    def max_growth(self) -> float | None:
        """The largest peak-RSS growth of any case, MiB (None: not measured)."""
        return max(self.max_growth_mib.values(), default=None)

    def problem(self, kind: str, case: FuzzCase, detail: str) -> None:
        target = self.crashes if kind == "crash" else self.violations
        if len(target) < 20:  # enough to debug; the count is in the summary
            target.append(f"case {case.index} ({case.mutation}, {case.seed.source}): {detail}")
        else:
            target.append(f"case {case.index}")

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "skipped": self.skipped,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "by_mutation": {
                m: dict(sorted(counts.items())) for m, counts in sorted(self.by_mutation.items())
            },
            "crashes": len(self.crashes),
            "crash_examples": self.crashes[:20],
            "violations": len(self.violations),
            "violation_examples": self.violations[:20],
            "max_seconds": round(self.max_seconds, 4),
            "slowest_case": self.slowest_case,
            "max_seconds_by_mutation": {
                m: round(s, 4) for m, s in sorted(self.max_seconds_by_mutation.items())
            },
            "seconds_by_mutation": {
                m: round(s, 2) for m, s in sorted(self.seconds_by_mutation.items())
            },
            "max_rss_growth_mib": None if self.max_growth is None else round(self.max_growth, 2),
            "max_rss_growth_mib_by_mutation": {
                m: round(v, 2) for m, v in sorted(self.max_growth_mib.items())
            },
            "peak_rss_before_mib": round(self.peak_rss_before_mib, 1),
            "peak_rss_after_mib": round(self.peak_rss_after_mib, 1),
            "wall_seconds": round(self.wall_seconds, 2),
        }


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class PeakMemory:
    """Peak-RSS growth of one step: ``start()``, the step, then ``growth()`` in MiB."""

    def __init__(self) -> None:
        self.works = self._reset()
        self._base_kib = 0

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            return False
        return True

    @staticmethod
    def _status_kib(name: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        return 0

    def start(self) -> None:
        if self.works:
            self._reset()
            self._base_kib = self._status_kib("VmRSS")

    def growth(self) -> float | None:
        if not self.works:
            return None
        return max(0, self._status_kib("VmHWM") - self._base_kib) / 1024


class _ErrorLog(logging.Handler):
    """Collects ERROR records (aiohttp logs a handler's traceback, then answers 500)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# -- analyze ------------------------------------------------------------------------------


def run_analyze(cases: Iterable[FuzzCase], workdir: Path) -> Tally:
    """Every case through ``analyze_paths`` as a file; see the module docstring."""
    tally = Tally(peak_rss_before_mib=_peak_rss_mib())
    memory = PeakMemory()
    began = time.perf_counter()
    for case in cases:
        path = workdir / f"case{case.suffix}"
        path.write_bytes(case.body)
        memory.start()
        start = time.process_time()
        try:
            diagnostics = analyze_paths([str(path)])
        except Exception as exc:  # the very thing this looks for
            tally.problem("crash", case, f"{type(exc).__name__}: {exc}"[:500])
            tally.record(case, "crash", time.process_time() - start, memory.growth())
            continue
        seconds = time.process_time() - start
        peak = memory.growth()
        errors = [d.message for d in diagnostics if d.is_error]
        if not errors:
            _check_valid(tally, case, load_file(path).resources)
        tally.record(case, "rejected:" + classify(errors) if errors else "accepted", seconds, peak)
    tally.wall_seconds = time.perf_counter() - began
    tally.peak_rss_after_mib = _peak_rss_mib()
    return tally


def _check_valid(tally: Tally, case: FuzzCase, resources: Iterable[Resource]) -> None:
    for res in resources:
        found = [d.format() for d in validate(res) if d.is_error]
        if found:
            tally.problem("violation", case, f"accepted {res.key} fails validation: {found[0]}")


# -- the config API -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Serving:
    revision: int
    snapshot_revision: int  # of the snapshot xDS serves; may lag the store briefly
    objects: tuple[Resource, ...]
    files: tuple[tuple[str, int, int], ...]

    def same(self, other: _Serving) -> bool:
        # A snapshot that had caught up with the store must not move: nothing to
        # catch up with (one still catching up with an earlier write may).
        snapshot_kept = (
            self.snapshot_revision != self.revision
            or other.snapshot_revision == self.snapshot_revision
        )
        return (
            snapshot_kept
            and self.revision == other.revision
            and len(self.objects) == len(other.objects)
            and all(a is b for a, b in zip(self.objects, other.objects, strict=True))
            and self.files == other.files
        )


def _serving(cp: ControlPlane, config_dir: Path) -> _Serving:
    files: list[tuple[str, int, int]] = []
    for dirpath, _, names in os.walk(config_dir):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            files.append((os.path.join(dirpath, name), st.st_size, st.st_mtime_ns))
    return _Serving(
        cp.store.revision,
        cp.generator.snapshot.revision,
        tuple(cp.store.list()),
        tuple(sorted(files)),
    )


def _url(seed: Seed) -> str:
    doc = seed.doc
    api_version = str(doc.get("apiVersion", ""))
    meta = doc.get("metadata") or {}
    namespace = meta.get("namespace", "default")
    prefix = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    kind = resolve_document_kind(api_version, seed.kind) or seed.kind
    return f"{prefix}/namespaces/{namespace}/{plural(kind)}/{meta.get('name')}"


def _stays_on_loopback(body: bytes) -> bool:
    """False if the body names a URL whose host is not 127.0.0.1 (a JWKS fetch would
    leave the machine). Seeds name only ``LOOPBACK_JWKS``; mutations rarely keep a URL."""
    if b"jwks" not in body.lower():
        return True
    return {m.group(1) for m in _URL_HOST.finditer(body)} <= {b"127.0.0.1"}


async def run_api(cases: Iterable[FuzzCase], workdir: Path) -> Tally:
    """Every case as a ``PUT`` to a real control plane; see the module docstring."""
    assert LOOPBACK_JWKS.startswith("http://127.0.0.1:")
    config_dir = workdir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    settings = ControlPlaneSettings(
        config_paths=(str(config_dir),),
        xds_port=0,
        http_port=0,
        poll_interval=0.5,
        quiet_period=0.01,
        max_delay=0.05,
    )
    cp = ControlPlane(settings)
    errors = _ErrorLog()
    logging.getLogger().addHandler(errors)
    tally = Tally(peak_rss_before_mib=_peak_rss_mib())
    memory = PeakMemory()
    began = time.perf_counter()
    await cp.start()
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        headers = {"Authorization": f"Bearer {cp.api_token.reveal()}"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            base = f"http://127.0.0.1:{cp.http_port}"
            for case in cases:
                if not _stays_on_loopback(case.body):
                    tally.skipped += 1
                    continue
                await _one_request(cp, session, base, config_dir, case, tally, memory)
        _check_disk(cp, config_dir, tally)
    finally:
        await cp.close()
        logging.getLogger().removeHandler(errors)
    for record in errors.records:
        tally.violations.append(f"logged error: {record.getMessage()[:300]}")
    tally.wall_seconds = time.perf_counter() - began
    tally.peak_rss_after_mib = _peak_rss_mib()
    return tally


async def _one_request(
    cp: ControlPlane,
    session: aiohttp.ClientSession,
    base: str,
    config_dir: Path,
    case: FuzzCase,
    tally: Tally,
    memory: PeakMemory,
) -> None:
    before = _serving(cp, config_dir)
    content_type = "application/json" if case.as_json else "application/yaml"
    memory.start()
    start = time.process_time()
    try:
        async with session.put(
            base + _url(case.seed), data=case.body, headers={"Content-Type": content_type}
        ) as resp:
            status, payload = resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.problem("crash", case, f"request failed: {type(exc).__name__}: {exc}")
        tally.record(case, "crash", time.process_time() - start, memory.growth())
        return
    seconds = time.process_time() - start
    peak = memory.growth()
    tally.statuses[status] += 1
    try:
        body = json.loads(payload)
    except ValueError:
        tally.problem("violation", case, f"status {status} with a body that is not JSON")
        tally.record(case, f"rejected:status_{status}", seconds, peak)
        return
    if 200 <= status < 300:
        _check_accepted(cp, case, body, tally)
        tally.record(case, "accepted", seconds, peak)
        return
    if not 400 <= status < 500:
        tally.problem("violation", case, f"status {status}: {str(body)[:300]}")
    if not before.same(_serving(cp, config_dir)):
        tally.problem("violation", case, f"rejected write ({status}) changed the serving config")
    tally.record(case, "rejected:" + _api_reason(status, body), seconds, peak)


def _api_reason(status: int, body: Any) -> str:
    if status == 413:
        return "limit:bytes"
    if not isinstance(body, dict):
        return f"status_{status}"
    messages = [str(e.get("message", "")) for e in body.get("errors", []) if isinstance(e, dict)]
    if status == 400:
        return classify([*messages, str(body.get("error", ""))])
    return f"status_{status}"


def _check_accepted(cp: ControlPlane, case: FuzzCase, body: Any, tally: Tally) -> None:
    meta = body.get("metadata", {}) if isinstance(body, dict) else {}
    written = str(body.get("kind"))
    kind = resolve_document_kind(str(body.get("apiVersion")), written) or written
    key = ResourceKey(kind, str(meta.get("namespace")), str(meta.get("name")))
    stored = cp.store.get(key)
    if stored is None:
        tally.problem("violation", case, f"accepted {key} is not in the store")
        return
    _check_valid(tally, case, [stored])


def _check_disk(cp: ControlPlane, config_dir: Path, tally: Tally) -> None:
    """What the API wrote loads back cleanly, and is exactly what the store serves."""
    on_disk: dict[ResourceKey, Resource] = {}
    for path in sorted(config_dir.rglob("*.yaml")) + sorted(config_dir.rglob("*.json")):
        loaded = load_file(path)
        bad: list[Diagnostic] = [d for d in loaded.diagnostics if d.is_error]
        if bad:
            tally.violations.append(f"written file {path} does not load: {bad[0].format()}")
        on_disk.update((r.key, r) for r in loaded.resources)
    served = {r.key for r in cp.store.list()}
    if served != set(on_disk):
        tally.violations.append(
            f"store serves {len(served)} objects, files hold {len(on_disk)}: "
            f"{sorted(map(str, served ^ set(on_disk)))[:5]}"
        )


def run_api_sync(cases: Iterable[FuzzCase], workdir: Path) -> Tally:
    """``run_api`` on a fresh event loop."""
    return asyncio.run(run_api(cases, workdir))
