"""``/debug/explain``: explain a request against what a connected proxy was generated.

Why a server-side route rather than ``/debug/ir`` and explaining in the CLI:
the walk needs more than one proxy's IR. It needs the caller's view (only the
xDS server knows it, from the node metadata), the current snapshot, and the
views of the *destination* workloads' connected proxies to evaluate their
inbound authorization. The control plane has all three in memory; the CLI and
the dashboard get one JSON answer and no IR travels.

- ``GET /debug/explain?from=<proxy>&url=<url>&method=GET&header=k:v...``
- ``POST /debug/explain`` with JSON ``{"from", "url", "method", "headers":
  ["k: v"], "config": [{"file", "text"}]}``: the same against the live
  configuration with the given YAML applied over it (not stored anywhere).

``from`` is a proxy id (``name.namespace``), or a workload name whose pods'
proxies are ``<workload>-<suffix>.<namespace>`` (the first connected one is
used); a name without namespace means ``default``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from pilotfish import ir
from pilotfish.explain.config import ConfigError, load_texts, overlay
from pilotfish.explain.engine import Peer, PeerFinder, explain
from pilotfish.explain.request import ExplainRequest, RequestError, parse_header
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.security.mtls import TLS_MODE_LABEL
from pilotfish.xds.server import XdsServer

__all__ = ["add_explain_api"]


def _find_proxy(views: Mapping[str, object], wanted: str) -> tuple[str, ProxyView] | None:
    name, _, namespace = wanted.partition(".")
    namespace = namespace or "default"
    exact = views.get(f"{name}.{namespace}")
    if isinstance(exact, ProxyView):
        return f"{name}.{namespace}", exact
    for pid in sorted(views):
        view = views[pid]
        pname, _, pns = pid.rpartition(".")
        if pns == namespace and pname.startswith(f"{name}-") and isinstance(view, ProxyView):
            return pid, view
    return None


def _peer_finder(views: Mapping[str, object]) -> PeerFinder:
    """Destination proxies from the connected ones, in the service's namespace: an
    explicit sidecar listening on the endpoint's address, or a capturing one
    whose labels include the endpoint's."""

    def find(
        snapshot: Snapshot, cluster: ir.Cluster, ep: ir.Endpoint, caller: ProxyView
    ) -> Peer | None:
        svc = snapshot.registry.services.get(cluster.service)
        inst = next(
            (
                i
                for i in snapshot.registry.instances_of(cluster.service, cluster.port)
                if i.address == ep.address and i.port == ep.port
            ),
            None,
        )
        if svc is None or inst is None:
            return None
        # The registry marks mTLS-capable endpoints with a label the proxy lacks.
        want = {k: v for k, v in inst.labels if k != TLS_MODE_LABEL}
        for pid in sorted(views):
            view = views[pid]
            if not isinstance(view, ProxyView) or view.role != "sidecar":
                continue
            if view.namespace != svc.namespace:
                continue
            if view.interception == "NONE" and view.bind_ip == ep.address:
                return Peer(pid, view)  # its listeners own the endpoint's address
            labelled = all(view.label_map.get(k) == v for k, v in want.items())
            if view.interception == "REDIRECT" and labelled:
                return Peer(pid, view)
        return None

    return find


def _request_of(params: Mapping[str, Any]) -> tuple[str, ExplainRequest]:
    source = str(params.get("from") or "")
    url = str(params.get("url") or "")
    if not source or not url:
        raise RequestError("'from' and 'url' are required")
    headers = params.get("headers") or []
    if not isinstance(headers, list):
        raise RequestError("'headers' must be a list of 'name: value' strings")
    parsed = tuple(parse_header(str(h)) for h in headers)
    return source, ExplainRequest(url, str(params.get("method") or "GET"), parsed)


def _explain(snapshot: Snapshot, xds: XdsServer, params: Mapping[str, Any]) -> web.Response:
    try:
        source, request = _request_of(params)
    except RequestError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    views = xds.views()
    found = _find_proxy(views, source)
    if found is None:
        return web.json_response({"error": f"no connected proxy for {source!r}"}, status=404)
    pid, view = found
    result = explain(snapshot, view, request, source=pid, find_peer=_peer_finder(views))
    return web.json_response(result.to_json())


def add_explain_api(
    app: web.Application, snapshot_of: Callable[[], Snapshot], xds_of: Callable[[], XdsServer]
) -> None:
    """Register the route; ``snapshot_of()``/``xds_of()`` give the current objects."""

    async def get(request: web.Request) -> web.Response:
        params: dict[str, Any] = dict(request.query)
        params["headers"] = request.query.getall("header", [])
        return _explain(snapshot_of(), xds_of(), params)

    async def post(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        snapshot = snapshot_of()
        files = body.get("config") or []
        if files:
            try:
                texts = [(str(f["file"]), str(f["text"])) for f in files]
                snapshot = overlay(snapshot, load_texts(texts))
            except (KeyError, TypeError):
                return web.json_response(
                    {"error": "config entries need 'file' and 'text'"}, status=400
                )
            except ConfigError as exc:
                return web.json_response(
                    {"error": str(exc), "diagnostics": [d.to_json() for d in exc.diagnostics]},
                    status=400,
                )
        return _explain(snapshot, xds_of(), body)

    app.router.add_get("/debug/explain", get)
    app.router.add_post("/debug/explain", post)
