"""Recent spans in bounded memory, indexed the way Zipkin's query API asks.

Theory of operation: spans arrive as Zipkin v2 JSON objects (what Envoy's
Zipkin tracer posts). They are grouped by trace id; traces are kept in
arrival order of their first span and the oldest trace is dropped whenever
the store holds more than ``max_traces`` traces or ``max_spans`` spans, so
memory stays bounded whatever the traffic. A trace that already holds
``max_spans_per_trace`` spans takes no more (one runaway trace cannot evict
everything else). Queries scan the traces newest first: a local store of a
few thousand traces answers in milliseconds, so no further index is kept
beyond the service names.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SpanError", "SpanStore", "StoreLimits", "TraceQuery"]

Span = dict[str, Any]


class SpanError(ValueError):
    """A posted span is not a Zipkin v2 span (the message says which field)."""


@dataclass(frozen=True, slots=True)
class StoreLimits:
    max_traces: int = 2000
    max_spans: int = 50_000
    max_spans_per_trace: int = 1000


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """Zipkin's ``/api/v2/traces`` parameters (times in milliseconds, durations in µs)."""

    service_name: str = ""
    span_name: str = ""
    end_ts_ms: int = 0  # 0: now (no upper bound)
    lookback_ms: int = 0  # 0: no lower bound
    min_duration_us: int = 0
    limit: int = 10


def _hex_id(span: Mapping[str, Any], name: str, lengths: tuple[int, ...]) -> str:
    value = span.get(name)
    if not isinstance(value, str) or len(value) not in lengths:
        raise SpanError(f"{name}: expected {' or '.join(map(str, lengths))} hex digits")
    try:
        int(value, 16)
    except ValueError as exc:
        raise SpanError(f"{name}: {value!r} is not hexadecimal") from exc
    return value.lower()


def validate_span(raw: object) -> Span:
    """``raw`` as a span, its ids normalised; raises ``SpanError``."""
    if not isinstance(raw, dict):
        raise SpanError("a span must be a JSON object")
    span: Span = dict(raw)
    span["traceId"] = _hex_id(span, "traceId", (16, 32)).rjust(32, "0")
    span["id"] = _hex_id(span, "id", (16,))
    if span.get("parentId") is not None:
        span["parentId"] = _hex_id(span, "parentId", (16,))
    for name in ("timestamp", "duration"):
        if name in span and not isinstance(span[name], int):
            raise SpanError(f"{name}: expected an integer (microseconds)")
    for name in ("localEndpoint", "remoteEndpoint", "tags"):
        if name in span and not isinstance(span[name], dict):
            raise SpanError(f"{name}: expected an object")
    return span


def _service(span: Span) -> str:
    endpoint = span.get("localEndpoint") or {}
    return str(endpoint.get("serviceName") or "")


class SpanStore:
    def __init__(self, limits: StoreLimits | None = None) -> None:
        self.limits = limits or StoreLimits()
        self._traces: OrderedDict[str, list[Span]] = OrderedDict()
        self._span_count = 0
        self.dropped = 0

    @property
    def span_count(self) -> int:
        return self._span_count

    def add(self, spans: Iterable[Span]) -> int:
        """Keep ``spans`` (already validated); returns how many were kept."""
        kept = 0
        for span in spans:
            trace = self._traces.get(span["traceId"])
            if trace is None:
                trace = self._traces[span["traceId"]] = []
            if len(trace) >= self.limits.max_spans_per_trace:
                self.dropped += 1
                continue
            trace.append(span)
            self._span_count += 1
            kept += 1
        self._evict()
        return kept

    def _evict(self) -> None:
        while self._traces and (
            len(self._traces) > self.limits.max_traces or self._span_count > self.limits.max_spans
        ):
            _, spans = self._traces.popitem(last=False)
            self._span_count -= len(spans)
            self.dropped += len(spans)

    def trace(self, trace_id: str) -> list[Span] | None:
        return self._traces.get(trace_id.lower().rjust(32, "0"))

    def services(self) -> list[str]:
        return sorted({_service(s) for t in self._traces.values() for s in t} - {""})

    def span_names(self, service: str) -> list[str]:
        return sorted(
            {
                str(s.get("name") or "")
                for t in self._traces.values()
                for s in t
                if _service(s) == service
            }
            - {""}
        )

    def traces(self, query: TraceQuery) -> list[list[Span]]:
        """Traces with a span matching every condition of ``query``, newest first."""
        out: list[list[Span]] = []
        for spans in reversed(self._traces.values()):
            if any(_matches(s, query) for s in spans):
                out.append(list(spans))
                if len(out) >= query.limit:
                    break
        return out


def _matches(span: Span, q: TraceQuery) -> bool:
    if q.service_name and _service(span) != q.service_name:
        return False
    if q.span_name and str(span.get("name") or "") != q.span_name:
        return False
    ts_ms = int(span.get("timestamp") or 0) // 1000
    if q.end_ts_ms and ts_ms > q.end_ts_ms:
        return False
    if q.lookback_ms and q.end_ts_ms and ts_ms < q.end_ts_ms - q.lookback_ms:
        return False
    return int(span.get("duration") or 0) >= q.min_duration_us
