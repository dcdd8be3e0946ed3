"""Route and virtual host selection, on the http-match translation case and by hand."""

from __future__ import annotations

import pytest
from explain_helpers import EXPLICIT, REDIRECT, case_snapshot

from pilotfish import ir
from pilotfish.explain.engine import explain
from pilotfish.explain.request import ExplainRequest, parse_header
from pilotfish.explain.routing import match_route, select_virtual_host
from pilotfish.model.proxy_view import ProxyView

V1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
V2 = "outbound|9080|v2|reviews.default.svc.cluster.local"


def _explain(url: str, method: str = "GET", *headers: str, view=REDIRECT):  # type: ignore[no-untyped-def]
    request = ExplainRequest(url, method, tuple(parse_header(h) for h in headers))
    return explain(case_snapshot("http-match"), view, request)


def _step(result, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in result.steps if s.step == name)


@pytest.mark.parametrize(
    ("url", "method", "headers", "route", "cluster"),
    [
        ("http://reviews:9080/login", "GET", (), "default/reviews/exact-login", V2),
        # ignoreUriCase: /API/ matches /api/.
        ("http://reviews:9080/api/x", "GET", (), "default/reviews/prefix-api-ignore-case", V2),
        ("http://reviews:9080/reviews/12", "GET", (), "default/reviews/regex", V1),
        # The regex must match the whole path (Envoy's safe_regex is a full match).
        ("http://reviews:9080/reviews/12/x", "GET", (), "default/reviews/catch-all", V1),
        # The query string is not part of the path.
        ("http://reviews:9080/login?x=1", "GET", (), "default/reviews/exact-login", V2),
        (
            "http://reviews.default:9080/",
            "POST",
            (":scheme: https",),
            "default/reviews/pseudo-headers",
            V2,
        ),
        (
            "http://reviews:9080/",
            "GET",
            ("end-user: jason", "x-tenant: acme-1", "x-trace: 0123456789abcdef", "x-canary: "),
            "default/reviews/headers",
            V2,
        ),
        ("http://reviews:9080/?debug=1&page=12", "GET", (), "default/reviews/query-params", V2),
        ("http://reviews:9080/?debug=1&page=x", "GET", (), "default/reviews/catch-all", V1),
        # OR-ed match blocks are one route each.
        ("http://reviews:9080/abc", "GET", (), "default/reviews/either-block/0", V1),
        ("http://reviews:9080/", "GET", ("x-b: yes",), "default/reviews/either-block/1", V1),
        ("http://reviews:9080/shadowed", "GET", (), "default/reviews/catch-all", V1),
        (
            "http://reviews:9090/admin",
            "GET",
            (),
            "default/reviews/admin-port-only",
            "outbound|9090||reviews.default.svc.cluster.local",
        ),
    ],
)
def test_route_and_cluster(
    url: str, method: str, headers: tuple[str, ...], route: str, cluster: str
) -> None:
    for view in (REDIRECT, EXPLICIT):
        result = _explain(url, method, *headers, view=view)
        assert _step(result, "route").chosen == route, (view.interception, result.to_json())
        assert result.outcome.cluster == cluster
        assert result.outcome.status is None


def test_each_skipped_route_says_why() -> None:
    headers = ("end-user: jason", "x-tenant: acme-1", "x-trace: 0123456789abcdef", "x-canary: 1")
    result = _explain("http://reviews:9080/", "GET", *headers, "x-region: eu")
    reasons = _step(result, "route").reasons
    assert reasons[0] == (
        "route default/reviews/exact-login skipped: path '/' does not match exact \"/login\""
    )
    headers_reason = next(r for r in reasons if r.startswith("route default/reviews/headers"))
    assert 'not (header x-region exact "eu")' in headers_reason
    query_reason = next(r for r in reasons if r.startswith("route default/reviews/query-params"))
    assert "needs query parameter debug" in query_reason
    assert reasons[-1].startswith("route default/reviews/catch-all matches")


def test_layouts_pick_their_listeners() -> None:
    captured = _explain("http://reviews:9080/")
    assert _step(captured, "listener").chosen == "0.0.0.0_9080"
    assert "10.96.0.20" in " ".join(_step(captured, "listener").reasons)
    explicit = _explain("http://reviews:9080/", view=EXPLICIT)
    assert _step(explicit, "listener").chosen == "127.0.0.5_15001"
    assert _step(explicit, "http connection manager").reasons[0] == "routes from RDS 'http_proxy'"


def test_unknown_host() -> None:
    # Captured: ALLOW_ANY passes it through; explicit: no virtual host, Envoy's 404.
    assert _explain("http://nosuch:9080/").outcome.cluster == "PassthroughCluster"
    explicit = _explain("http://nosuch:9080/", view=EXPLICIT)
    assert explicit.outcome.status == 404 and explicit.outcome.cluster is None
    # The explicit proxy's domains are port-qualified: no port, no virtual host.
    assert _explain("http://reviews/", view=EXPLICIT).outcome.status == 404


def _vh(name: str, *domains: str) -> ir.VirtualHost:
    route = ir.Route(name, ir.RouteMatch(), ir.ForwardAction((ir.WeightedCluster(name, 100),)))
    return ir.VirtualHost(name, domains, (route,))


@pytest.mark.parametrize(
    ("authority", "chosen"),
    [
        ("api.example.com", "exact"),
        ("API.Example.com", "exact"),  # case-insensitive
        ("www.example.com", "suffix-long"),
        ("x.other.com", "suffix-short"),
        ("foo.bar", "prefix"),
        ("api.example.com:8080", "port"),
        ("elsewhere", "any"),
        # A wildcard covers at least one character.
        (".com", "any"),
    ],
)
def test_virtual_host_precedence(authority: str, chosen: str) -> None:
    config = ir.RouteConfig(
        "rc",
        (
            _vh("any", "*"),
            _vh("prefix", "foo.*"),
            _vh("suffix-short", "*.com"),
            _vh("suffix-long", "*.example.com"),
            _vh("exact", "api.example.com"),
            _vh("port", "api.example.com:8080"),
        ),
    )
    vh, _domain, _reasons = select_virtual_host(config, authority)
    assert vh is not None and vh.name == chosen


def test_regex_uses_re2_semantics() -> None:
    # RE2 has no backreferences: Envoy would reject the route; it never matches here.
    backref = ir.Route(
        "backref", ir.RouteMatch(ir.StringMatch("regex", r"/(a)\1")), ir.DirectResponseAction(200)
    )
    digits = ir.Route(
        "digits", ir.RouteMatch(ir.StringMatch("regex", r"/\d+")), ir.DirectResponseAction(200)
    )
    route, reasons = match_route((backref, digits), ExplainRequest("http://h/aa"))
    assert route is None and len(reasons) == 3
    route, _ = match_route((backref, digits), ExplainRequest("http://h/12"))
    assert route is digits
    route, _ = match_route((digits,), ExplainRequest("http://h/12a"))
    assert route is None


GATEWAY = ProxyView(
    "gateway", "istio-system", labels=(("istio", "ingressgateway"),), bind_ip="127.0.0.1",
    app_ports=((8080, 18080),),
)  # fmt: skip


def test_gateway_listener_by_server_or_published_port() -> None:
    snapshot = case_snapshot("gateway")
    for port in (8080, 18080):
        request = ExplainRequest(f"http://bookinfo.example.com:{port}/productpage")
        result = explain(snapshot, GATEWAY, request)
        assert _step(result, "listener").chosen == "0.0.0.0_8080"
        assert _step(result, "listener").reasons == [
            "the gateway listener 0.0.0.0_8080 serves port 18080"
        ]
    # The Host names the published port: gateway domains take any port (host:*).
    assert result.outcome.status is None
    assert result.outcome.cluster == "outbound|9080||productpage.default.svc.cluster.local"
    request = ExplainRequest("http://bookinfo.example.com:8080/productpage")
    result = explain(snapshot, GATEWAY, request)
    assert result.outcome.cluster == "outbound|9080||productpage.default.svc.cluster.local"
    assert _step(result, "route").chosen == "default/bookinfo/0/0"
    assert explain(snapshot, GATEWAY, ExplainRequest("http://x:9999/")).outcome.notes == [
        "the connection is refused: no listener"
    ]


def test_jwt_claim_routes_need_a_verified_token() -> None:
    # jwt-claim-routing case: "admins" needs claim group, "not-guests" holds when the
    # claim role.name is absent, which it is for a request without a verified token.
    request = ExplainRequest("http://anything:8080/", "GET", (parse_header("x-canary: 1"),))
    gateway = ProxyView("gateway", "istio-system", labels=(("istio", "ingressgateway"),))
    result = explain(case_snapshot("jwt-claim-routing"), gateway, request)
    reasons = _step(result, "route").reasons
    assert reasons[0] == (
        "route default/reviews/admins skipped: needs JWT claim group (the request has no "
        "verified token)"
    )
    assert reasons[1] == (
        'route default/reviews/not-guests matches (path prefix "/", JWT claim role.name absent)'
    )
