"""The dashboard's aiohttp application: JSON endpoints for the pages plus static files.

Theory of operation: every page polls one JSON endpoint. Each endpoint asks its
backends (Prometheus, the Zipkin-compatible trace store, the control plane's
HTTP API) on demand and folds the answers; nothing is cached, so a page shows
what the backends know now. A backend that is down turns into a 502 with a
message naming it, which the page shows instead of stale data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pilotfish.dashboard.applies import applies_to, served_services
from pilotfish.dashboard.backends import BackendError, Backends
from pilotfish.dashboard.graph import build_graph, health

__all__ = ["STATIC_DIR", "make_app", "run"]

STATIC_DIR = Path(__file__).parent / "static"

_GRAPH_LABELS = (
    "source_workload, source_workload_namespace, destination_workload, "
    "destination_service_name, destination_service_namespace"
)
_REQUESTS = (
    'sum(rate(istio_requests_total{{reporter="destination"}}[{w}])) by ({l}, response_code, '
    "request_protocol, connection_security_policy)"
)
_QUANTILE = (
    "histogram_quantile({q}, sum(rate(istio_request_duration_milliseconds_bucket"
    '{{reporter="destination"}}[{w}])) by ({l}, le))'
)
_TCP = (
    'sum(rate(istio_tcp_sent_bytes_total{{reporter="destination"}}[{w}])) by ({l}, '
    "connection_security_policy)"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BACKENDS = web.AppKey("backends", Backends)


def _window(request: web.Request) -> str:
    value = request.query.get("window", "1m")
    if not value[:-1].isdigit() or value[-1] not in "smh":
        raise web.HTTPBadRequest(text=f"window {value!r}: expected a duration such as 1m")
    return value


def _guarded(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BackendError as exc:
            return web.json_response({"error": str(exc)}, status=502)

    return wrapped


async def _graph(request: web.Request) -> web.StreamResponse:
    backends = request.app[_BACKENDS]
    w = _window(request)
    requests, p50, p99, tcp = await asyncio.gather(
        backends.query(_REQUESTS.format(w=w, l=_GRAPH_LABELS)),
        backends.query(_QUANTILE.format(q="0.5", w=w, l=_GRAPH_LABELS)),
        backends.query(_QUANTILE.format(q="0.99", w=w, l=_GRAPH_LABELS)),
        backends.query(_TCP.format(w=w, l=_GRAPH_LABELS)),
    )
    graph = build_graph(requests, p50, p99, tcp)
    graph["timestamp"] = time.time()
    return web.json_response(graph)


async def _pods_with_sync(backends: Backends) -> list[dict[str, Any]]:
    pods_body, syncz = await asyncio.gather(
        backends.control("/runtime/pods"), backends.control("/debug/syncz")
    )
    pods: list[dict[str, Any]] = list(pods_body.get("pods", []))
    by_proxy = {row.get("proxy_id"): row for row in syncz}
    for pod in pods:
        row = by_proxy.get(f"{pod.get('name')}.{pod.get('namespace')}")
        pod["sidecar_sync"] = _sync_state(row)
    return pods


def _sync_state(row: dict[str, Any] | None) -> str:
    if row is None:
        return "NOT CONNECTED"
    types = row.get("types", {})
    states = set()
    for name in ("CDS", "LDS", "EDS", "RDS"):
        entry = types.get(name) or {}
        acked, sent = entry.get("acked"), entry.get("sent")
        if entry.get("error"):
            states.add("ERROR")
        elif sent and acked == sent:
            states.add("SYNCED")
        elif sent:
            states.add("STALE")
        else:
            states.add("NOT SENT")
    return "SYNCED" if states == {"SYNCED"} else "/".join(sorted(states))


async def _inventory(request: web.Request) -> web.StreamResponse:
    """Workloads and services with their health, pods, sync state and identities."""
    backends = request.app[_BACKENDS]
    w = _window(request)
    by = "destination_workload, destination_workload_namespace, destination_service_name"
    total_q = f'sum(rate(istio_requests_total{{reporter="destination"}}[{w}])) by ({by})'
    err_q = (
        f'sum(rate(istio_requests_total{{reporter="destination",response_code=~"5.."}}[{w}]))'
        f" by ({by})"
    )
    pods, totals, errors = await asyncio.gather(
        _pods_with_sync(backends), backends.query(total_q), backends.query(err_q)
    )
    rates: dict[tuple[str, str], list[float]] = {}
    services: dict[tuple[str, str], dict[str, Any]] = {}
    for results, index in ((totals, 0), (errors, 1)):
        for sample in results:
            m = sample.get("metric", {})
            key = (m.get("destination_workload_namespace", ""), m.get("destination_workload", ""))
            value = float(sample["value"][1])
            rates.setdefault(key, [0.0, 0.0])[index] += value
            skey = (key[0], m.get("destination_service_name", ""))
            svc = services.setdefault(
                skey,
                {"namespace": skey[0], "name": skey[1], "workloads": set(), "rates": [0.0, 0.0]},
            )
            svc["workloads"].add(key[1])
            svc["rates"][index] += value
    workloads: dict[tuple[str, str], dict[str, Any]] = {}
    for pod in pods:
        key = (pod.get("namespace", ""), pod.get("workload", ""))
        entry = workloads.setdefault(key, {"namespace": key[0], "name": key[1], "pods": []})
        entry["pods"].append(pod)
    for key in rates:
        workloads.setdefault(key, {"namespace": key[0], "name": key[1], "pods": []})
    for key, entry in workloads.items():
        rps, err = rates.get(key, [0.0, 0.0])
        entry.update(rps=round(rps, 4), error_rps=round(err, 4), health=health(rps, err))
    service_rows = []
    for svc in services.values():
        rps, err = svc.pop("rates")
        svc.update(workloads=sorted(svc["workloads"]), rps=round(rps, 4), health=health(rps, err))
        service_rows.append(svc)
    return web.json_response(
        {
            "workloads": sorted(workloads.values(), key=lambda e: (e["namespace"], e["name"])),
            "services": sorted(service_rows, key=lambda e: (e["namespace"], e["name"])),
        }
    )


async def _config(request: web.Request) -> web.StreamResponse:
    return web.json_response(await request.app[_BACKENDS].control("/debug/configz"))


async def _golden(request: web.Request) -> web.StreamResponse:
    """Inbound and outbound rps, success rate and latency quantiles of one workload over time."""
    backends = request.app[_BACKENDS]
    workload = request.query.get("workload", "")
    namespace = request.query.get("namespace", "")
    if not workload or not namespace or '"' in workload + namespace:
        raise web.HTTPBadRequest(text="workload and namespace query parameters are required")
    end = time.time()
    start, step = end - 600, 15.0
    series: dict[str, Any] = {}
    for direction, side in (("inbound", "destination"), ("outbound", "source")):
        sel = (
            f'reporter="{side}",{side}_workload="{workload}",'
            f'{side}_workload_namespace="{namespace}"'
        )
        queries = {
            "rps": f"sum(rate(istio_requests_total{{{sel}}}[1m]))",
            "success": f'sum(rate(istio_requests_total{{{sel},response_code!~"5.."}}[1m]))'
            f" / sum(rate(istio_requests_total{{{sel}}}[1m]))",
        }
        for name, q in (("p50", "0.5"), ("p90", "0.9"), ("p99", "0.99")):
            queries[name] = (
                f"histogram_quantile({q}, sum(rate("
                f"istio_request_duration_milliseconds_bucket{{{sel}}}[1m])) by (le))"
            )
        results = await asyncio.gather(
            *(backends.query_range(q, start, end, step) for q in queries.values())
        )
        series[direction] = {
            name: [[float(t), float(v)] for t, v in (res[0]["values"] if res else [])]
            for name, res in zip(queries, results, strict=True)
        }
    pods = [p for p in await _pods_with_sync(backends) if p.get("workload") == workload]
    applies = await _applying_config(backends, namespace, workload)
    return web.json_response({"series": series, "pods": pods, "config": applies})


_POLICY_LISTS = (
    "/apis/networking.istio.io/v1/virtualservices",
    "/apis/networking.istio.io/v1/destinationrules",
    "/apis/networking.istio.io/v1/sidecars",
    "/apis/security.istio.io/v1/peerauthentications",
    "/apis/security.istio.io/v1/authorizationpolicies",
    "/apis/security.istio.io/v1/requestauthentications",
)


async def _applying_config(
    backends: Backends, namespace: str, workload: str
) -> list[dict[str, Any]]:
    workloads, services, *lists = await asyncio.gather(
        backends.control(f"/apis/pilotfish.io/v1alpha1/namespaces/{namespace}/workloads"),
        backends.control("/api/v1/services"),
        *(backends.control(path) for path in _POLICY_LISTS),
    )
    labels: dict[str, str] = {}
    for item in workloads.get("items", []):
        if item.get("metadata", {}).get("name") == workload:
            labels = {str(k): str(v) for k, v in (item["metadata"].get("labels") or {}).items()}
    served = served_services(services.get("items", []), namespace, labels)
    docs = [doc for body in lists for doc in body.get("items", [])]
    return applies_to(docs, namespace, labels, served)


async def _traces(request: web.Request) -> web.StreamResponse:
    params = {k: v for k, v in request.query.items() if k in ("serviceName", "limit", "lookback")}
    params.setdefault("limit", "20")
    backends = request.app[_BACKENDS]
    services, traces = await asyncio.gather(
        backends.zipkin("/api/v2/services"), backends.zipkin("/api/v2/traces", params)
    )
    return web.json_response({"services": services, "traces": traces})


async def _trace(request: web.Request) -> web.StreamResponse:
    trace_id = request.match_info["trace_id"]
    if not all(c in "0123456789abcdefABCDEF" for c in trace_id):
        raise web.HTTPBadRequest(text=f"trace id {trace_id!r} is not hexadecimal")
    return web.json_response(await request.app[_BACKENDS].zipkin(f"/api/v2/trace/{trace_id}"))


async def _explain(request: web.Request) -> web.StreamResponse:
    """How a workload's proxy handles a request: the control plane's ``/debug/explain``
    for the workload (its first connected pod), passed through."""
    q = request.query
    workload, namespace, url = (
        q.get("workload", ""),
        q.get("namespace", "default"),
        q.get("url", ""),
    )
    if not workload or not url:
        raise web.HTTPBadRequest(text="workload and url query parameters are required")
    params = [("from", f"{workload}.{namespace}"), ("url", url), ("method", q.get("method", "GET"))]
    params += [("header", h) for h in q.getall("header", []) if h.strip()]
    return web.json_response(await request.app[_BACKENDS].control("/debug/explain", params))


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def make_app(backends: Backends) -> web.Application:
    app = web.Application()
    app[_BACKENDS] = backends
    app.router.add_get("/api/graph", _guarded(_graph))
    app.router.add_get("/api/inventory", _guarded(_inventory))
    app.router.add_get("/api/config", _guarded(_config))
    app.router.add_get("/api/workload", _guarded(_golden))
    app.router.add_get("/api/traces", _guarded(_traces))
    app.router.add_get("/api/trace/{trace_id}", _guarded(_trace))
    app.router.add_get("/api/explain", _guarded(_explain))
    app.router.add_get("/", _index)
    app.router.add_static("/static", STATIC_DIR)

    async def _close(app: web.Application) -> None:
        await backends.close()

    app.on_cleanup.append(_close)
    return app


def run(address: str, port: int, backends: Backends) -> None:
    """Serve until interrupted."""
    web.run_app(make_app(backends), host=address, port=port, print=None)
