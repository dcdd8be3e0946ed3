"""The embedded trace store: bounded memory and Zipkin's query API shapes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pilotfish.tracing.server import make_app
from pilotfish.tracing.store import SpanError, SpanStore, StoreLimits, TraceQuery, validate_span


def _span(
    trace: int, span: int, service: str, *, parent: int | None = None, **kw: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": f"{trace:016x}",
        "id": f"{span:016x}",
        "name": kw.pop("name", "get"),
        "timestamp": kw.pop("timestamp", int(time.time() * 1e6)),
        "duration": kw.pop("duration", 1000),
        "localEndpoint": {"serviceName": service},
        **kw,
    }
    if parent is not None:
        out["parentId"] = f"{parent:016x}"
    return out


def test_oldest_traces_go_first_when_full() -> None:
    store = SpanStore(StoreLimits(max_traces=2, max_spans=100, max_spans_per_trace=3))
    for trace in (1, 2, 3):
        store.add([validate_span(_span(trace, 1, "a"))])
    assert store.trace(f"{1:016x}") is None
    assert store.trace(f"{3:016x}") is not None
    assert store.dropped == 1
    # One trace cannot take more than its share.
    store.add([validate_span(_span(3, i, "a")) for i in range(2, 10)])
    assert len(store.trace(f"{3:016x}") or []) == 3


def test_span_limit_bounds_total_spans() -> None:
    store = SpanStore(StoreLimits(max_traces=100, max_spans=5, max_spans_per_trace=5))
    for trace in range(1, 5):
        store.add([validate_span(_span(trace, i, "a")) for i in range(1, 3)])
    assert store.span_count <= 5


def test_bad_spans_are_refused_with_the_field() -> None:
    with pytest.raises(SpanError, match="traceId"):
        validate_span({"id": "00000000000000aa"})
    with pytest.raises(SpanError, match="parentId"):
        validate_span({"traceId": "a" * 16, "id": "b" * 16, "parentId": "zz"})


def test_queries_filter_by_service_duration_and_window() -> None:
    store = SpanStore()
    now_us = int(time.time() * 1e6)
    store.add(
        [
            validate_span(_span(1, 1, "productpage", duration=5000, timestamp=now_us)),
            validate_span(_span(1, 2, "reviews", parent=1, duration=2000, timestamp=now_us)),
            validate_span(_span(2, 1, "details", duration=10, timestamp=now_us - 3_600_000_000)),
        ]
    )
    assert store.services() == ["details", "productpage", "reviews"]
    now_ms = now_us // 1000 + 1
    found = store.traces(TraceQuery(service_name="reviews", end_ts_ms=now_ms, lookback_ms=60_000))
    assert [len(t) for t in found] == [2]
    assert store.traces(TraceQuery(end_ts_ms=now_ms, lookback_ms=60_000, min_duration_us=4000))
    assert not store.traces(
        TraceQuery(service_name="details", end_ts_ms=now_ms, lookback_ms=60_000)
    )


async def test_http_api_speaks_zipkin_v2() -> None:
    async with TestClient(TestServer(make_app(SpanStore()))) as client:
        spans = [_span(7, 1, "productpage"), _span(7, 2, "reviews", parent=1)]
        resp = await client.post("/api/v2/spans", json=spans)
        assert resp.status == 202
        assert await (await client.get("/api/v2/services")).json() == ["productpage", "reviews"]
        traces = await (
            await client.get("/api/v2/traces", params={"serviceName": "reviews"})
        ).json()
        assert len(traces) == 1 and {s["id"] for s in traces[0]} == {f"{1:016x}", f"{2:016x}"}
        trace = await (await client.get(f"/api/v2/trace/{7:016x}")).json()
        assert trace[0]["traceId"] == f"{7:032x}"
        assert (await client.get(f"/api/v2/trace/{8:016x}")).status == 404
        assert (await client.post("/api/v2/spans", data=b"{")).status == 400
        assert (await client.post("/api/v2/spans", json=[{"id": 1}])).status == 400
        assert (await client.get("/api/v2/traces", params={"limit": "x"})).status == 400
        big = b"[" + b" " * (5 * 1024 * 1024) + b"]"
        assert (await client.post("/api/v2/spans", data=big)).status == 413
