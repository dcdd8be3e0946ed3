"""Focused checks of VirtualService route translation, beyond what the goldens pin."""

from __future__ import annotations

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.http_routes import DEFAULT_RETRY, RouteContext, http_routes

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: http-alt, port: 9081}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - name: moved
    match: [{uri: {prefix: /moved}}]
    redirect: {uri: /here}
  - name: only-9081
    match: [{port: 9081, uri: {prefix: /alt}}]
    route: [{destination: {host: ratings}}]
  - name: retries-given
    match: [{uri: {prefix: /r}}]
    retries: {attempts: 4, retryOn: "reset,502"}
    route: [{destination: {host: ratings}}]
  - name: rest
    route: [{destination: {host: ratings}}]
"""


def snapshot() -> Snapshot:
    result = load_text(CONFIG, "routes.yaml")
    assert result.ok, result.diagnostics
    return build_snapshot(result.resources, 1)


def routes(port: int) -> dict[str, ir.Route]:
    snap = snapshot()
    (vs,) = snap.of_kind("VirtualService")
    return {r.name: r for r in http_routes(vs, RouteContext(snap, "default", port))}


def test_match_port_restricts_a_rule_to_one_route_configuration() -> None:
    assert "default/ratings/only-9081" not in routes(9080)
    alt = routes(9081)["default/ratings/only-9081"]
    assert isinstance(alt.action, ir.ForwardAction)
    # Without a destination port the route keeps the port it was reached on.
    assert alt.action.clusters[0].cluster == "outbound|9081||ratings.default.svc.cluster.local"


def test_retries_and_the_default_policy() -> None:
    by_name = routes(9080)
    given = by_name["default/ratings/retries-given"].action
    assert isinstance(given, ir.ForwardAction)
    assert given.retry == ir.RetryPolicy(4, "reset,retriable-status-codes", None, (502,))
    rest = by_name["default/ratings/rest"].action
    assert isinstance(rest, ir.ForwardAction)
    assert rest.retry == DEFAULT_RETRY
    assert rest.timeout_ms == 0  # Istio's default: no route timeout


def test_redirect_uri_replaces_the_whole_path_even_on_a_prefix_match() -> None:
    action = routes(9080)["default/ratings/moved"].action
    assert isinstance(action, ir.RedirectAction)
    assert action.path == "/here"
    assert action.prefix is None
