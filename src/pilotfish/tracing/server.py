"""The trace store's HTTP side: Zipkin's v2 collector and query API.

``POST /api/v2/spans`` takes a JSON array of Zipkin v2 spans (Envoy's Zipkin
tracer posts them in batches) and answers 202; a body over
``MAX_BODY_BYTES`` is refused with 413 before it is read, a malformed one
with 400 naming the bad field. The query side answers like Zipkin:
``/api/v2/services``, ``/api/v2/spans?serviceName=``, ``/api/v2/traces``
(``serviceName``, ``spanName``, ``endTs`` and ``lookback`` in ms,
``minDuration`` in µs, ``limit``) and ``/api/v2/trace/{traceId}``, so
tools that speak Zipkin's API read it.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from pilotfish.tracing.store import SpanError, SpanStore, TraceQuery, validate_span

__all__ = ["MAX_BODY_BYTES", "make_app"]

MAX_BODY_BYTES = 4 * 1024 * 1024
_STORE: web.AppKey[SpanStore] = web.AppKey("store", SpanStore)


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{name}: {text!r} is not an integer") from exc
    if value < 0:
        raise web.HTTPBadRequest(text=f"{name}: must not be negative")
    return value


async def _post_spans(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY_BYTES, actual_size=request.content_length
        )
    body = await request.read()  # bounded by client_max_size as well
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"not JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise web.HTTPBadRequest(text="expected a JSON array of spans")
    try:
        spans = [validate_span(s) for s in raw]
    except SpanError as exc:
        raise web.HTTPBadRequest(text=f"bad span: {exc}") from exc
    request.app[_STORE].add(spans)
    return web.Response(status=202)


async def _services(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STORE].services())


async def _span_names(request: web.Request) -> web.Response:
    service = request.query.get("serviceName", "")
    if not service:
        raise web.HTTPBadRequest(text="serviceName is required")
    return web.json_response(request.app[_STORE].span_names(service))


async def _traces(request: web.Request) -> web.Response:
    now_ms = int(time.time() * 1000)
    query = TraceQuery(
        service_name=request.query.get("serviceName", ""),
        span_name=request.query.get("spanName", "")
        if request.query.get("spanName") != "all"
        else "",
        end_ts_ms=_int_param(request, "endTs", now_ms),
        lookback_ms=_int_param(request, "lookback", 24 * 3600 * 1000),
        min_duration_us=_int_param(request, "minDuration", 0),
        limit=max(1, min(_int_param(request, "limit", 10), 1000)),
    )
    return web.json_response(request.app[_STORE].traces(query))


async def _trace(request: web.Request) -> web.Response:
    trace_id = request.match_info["trace_id"]
    spans = request.app[_STORE].trace(trace_id)
    if spans is None:
        raise web.HTTPNotFound(text=f"trace {trace_id} not found")
    return web.json_response(spans)


async def _health(request: web.Request) -> web.Response:
    store = request.app[_STORE]
    return web.json_response({"status": "UP", "spans": store.span_count, "dropped": store.dropped})


def make_app(store: SpanStore) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[_STORE] = store
    app.router.add_post("/api/v2/spans", _post_spans)
    app.router.add_get("/api/v2/services", _services)
    app.router.add_get("/api/v2/spans", _span_names)
    app.router.add_get("/api/v2/traces", _traces)
    app.router.add_get("/api/v2/trace/{trace_id}", _trace)
    app.router.add_get("/health", _health)
    return app
