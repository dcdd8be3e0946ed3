"""More extended tests of both profiles, ported from upstream's Go (see ``cases``):
named rules, and the mesh versions of query-parameter matching and port
redirects. Where upstream leaves the backend unchecked (HTTPRouteNamedRule
only wants a 200 from the namespace) the case names the backend the
manifest routes to; upstream's mesh client does not compare paths at all,
this harness does (so MeshHTTPRouteNamedRule's ``/unnamed``, which upstream
lists with an expected path ``/named`` it never checks, must reach echo-v2
as ``/unnamed``)."""

from __future__ import annotations

from dataclasses import replace

from cases import CORE, INFRA, V1, V2, Case, Expect, _h, _to
from cases_mesh import E1, E2, MESH, MESH_CASES

_SAME = "same-namespace"


def _m(backend: str, path: str, **kw: object) -> Expect:
    return Expect(path=path, host="echo", backend=backend, namespace=MESH, **kw)  # type: ignore[arg-type]


def _m404(path: str, **kw: object) -> Expect:
    return Expect(path=path, host="echo", status=404, **kw)  # type: ignore[arg-type]


def _mr(backend: str, host: str, set_to: str = "", client: str = "") -> Expect:
    """A mesh request whose response must carry ``X-Header-Set: set_to`` (none when "")."""
    want = (("X-Header-Set", set_to),) if set_to else ()
    return Expect(
        path="/",
        host=host,
        backend=backend,
        namespace=MESH,
        response_headers=want,
        absent_response_headers=() if set_to else ("X-Header-Set",),
        client=client,
    )


_HEADER_FEATURE = "HTTPRouteResponseHeaderModification"


def _host_header(host: str) -> dict[str, object]:
    """A request whose Host header is ``host`` whatever it dials; the backend sees
    that host, and no Host among its headers (Go keeps it apart)."""
    return {"headers": (("Host", host),), "seen_host": host, "seen_headers": ()}


def _m_port(path: str, status: int = 302, host: str = "") -> Expect:
    return Expect(path=path, host="echo", status=status, location=("", host, "8083", ""))


def _timeouts(name: str, route: str, prefix: str, feature: str) -> Case:
    """Upstream's timeout tests: the echo backend's ``?delay=1s`` outlasts the route's
    500ms timeout (504), a timeout of 0s disables it (200)."""
    return Case(
        name,
        False,
        (f"httproute-timeout-{route}.yaml",),
        _SAME,
        ((INFRA, f"{route}-timeout"),),
        (
            _to(V1, f"/{prefix}-timeout"),
            Expect(f"/{prefix}-timeout?delay=1s", status=504),
            _to(V1, f"/disable-{prefix}-timeout?delay=1s"),
        ),
        features=("Gateway", "HTTPRoute", feature),
    )


def _backend_filters(of: Case, name: str, manifest: str, feature: str) -> Case:
    """Upstream runs the RequestHeaderModifier test again with the filters on the
    backendRef instead of the rule: the same expectations, another manifest."""
    return replace(
        of,
        name=name,
        core=False,
        manifests=(manifest,),
        features=(*of.features, feature),
    )


_RHM = next(c for c in CORE if c.name == "HTTPRouteRequestHeaderModifier")
_MESH_RHM = next(c for c in MESH_CASES if c.name == "MeshHTTPRouteRequestHeaderModifier")

MORE_CASES: tuple[Case, ...] = (
    _backend_filters(
        _RHM,
        "HTTPRouteBackendRequestHeaderModifier",
        "httproute-request-header-modifier-backend.yaml",
        "HTTPRouteBackendRequestHeaderModification",
    ),
    _timeouts("HTTPRouteTimeoutRequest", "request", "request", "HTTPRouteRequestTimeout"),
    _timeouts(
        "HTTPRouteTimeoutBackendRequest", "backend-request", "backend", "HTTPRouteBackendTimeout"
    ),
    Case(
        "HTTPRouteNamedRule",
        False,
        ("httproute-named-rule.yaml",),
        _SAME,
        ((INFRA, "http-named-rules"),),
        (_to(V1, "/named"), _to(V2, "/unnamed")),
        conditions=((INFRA, "http-named-rules", "ResolvedRefs", "True", ""),),
        features=("Gateway", "HTTPRoute", "HTTPRouteNamedRouteRule"),
    ),
)

_LISTENER_SET = (
    "ListenerSet is an experimental-channel kind; Pilotfish serves the standard "
    "channel v1 (issue 11) and has no ListenerSet kind"
)
_LISTENER_SET_TESTS = (
    ("ListenerSetAllowedRoutesNamespaces", ("ListenerSet", "ReferenceGrant")),
    ("ListenerSetDualParentRefIndependence", ("ListenerSet",)),
    ("ListenerSetGatewayParentSectionNameNotFound", ("ListenerSet",)),
    ("ListenerSetHTTPRouting", ("ListenerSet",)),
    ("ListenerSetRouteStatusScopedToParentRef", ("ListenerSet",)),
)
MORE_CASES += tuple(
    Case(
        name,
        False,
        (),
        "",
        (),
        not_applicable=_LISTENER_SET,
        features=("Gateway", "HTTPRoute", *extra),
    )
    for name, extra in _LISTENER_SET_TESTS
)

MORE_MESH_CASES: tuple[Case, ...] = (
    _backend_filters(
        _MESH_RHM,
        "MeshHTTPRouteBackendRequestHeaderModifier",
        "mesh/httproute-request-header-modifier-backend.yaml",
        "MeshHTTPRouteBackendRequestHeaderModification",
    ),
    Case(
        "MeshHTTPRouteNamedRule",
        False,
        ("mesh/httproute-named-rule.yaml",),
        "",
        ((MESH, "mesh-http-named-rules"),),
        (_m(E1, "/named"), _m(E2, "/unnamed")),
        features=("Mesh", "HTTPRoute", "MeshHTTPRouteNamedRouteRule"),
    ),
    Case(
        "MeshHTTPRouteQueryParamMatching",
        False,
        ("mesh/httproute-query-param-matching.yaml",),
        "",
        ((MESH, "mesh-query-param-matching"),),
        (
            _m(E1, "/?animal=whale"),
            _m(E2, "/?animal=dolphin"),
            _m(E1, "/?animal=whale&otherparam=irrelevant"),
            _m(E2, "/?animal=dolphin&color=yellow"),
            _m404("/?color=blue"),
            _m404("/?animal=dog"),
            _m404("/?animal=whaledolphin"),
            _m404("/"),
            _m(E1, "/path1?animal=whale"),
            _m(E2, "/?animal=whale", headers=_h(version="one")),
            _m(E1, "/path3?animal=shark"),
            _m(E1, "/path4?animal=kraken", headers=_h(version="three")),
            _m404("/?animal=shark"),
            _m404("/path4?animal=kraken"),
            _m(E1, "/path5?animal=hydra"),
        ),
        features=("Mesh", "HTTPRoute", "MeshHTTPRouteQueryParamMatching"),
    ),
    Case(
        "MeshHTTPRouteRedirectPort",
        False,
        ("mesh/httproute-redirect-port.yaml",),
        "",
        ((MESH, "mesh-redirect-port"),),
        (
            _m_port("/port"),
            _m_port("/port-and-host", host="example.org"),
            _m_port("/port-and-status", status=301),
            _m_port("/port-and-host-and-status", host="example.org"),
        ),
        features=("Mesh", "HTTPRoute", "MeshHTTPRouteRedirectPort"),
    ),
    Case(
        "MeshFrontend",
        False,
        ("mesh/mesh-frontend.yaml",),
        "",
        ((MESH, "mesh-split-v1"),),
        (_mr(E2, "echo-v2", "set"), _mr(E2, "{ip:echo-v2}:8080")),
        features=("Mesh", "HTTPRoute", _HEADER_FEATURE),
    ),
    Case(
        "MeshFrontendHostname",
        False,
        ("mesh/mesh-frontend.yaml",),
        "",
        ((MESH, "mesh-split-v1"),),
        (
            # Dialled echo-v2 (its cluster IP), Host echo-v1: echo-v2's route applies.
            replace(_mr(E2, "echo-v2", "set"), **_host_header("echo-v1")),
            # Dialled echo-v1, Host echo-v2: echo-v1, untouched by echo-v2's route.
            replace(_mr(E1, "echo-v1"), **_host_header("echo-v2")),
        ),
        features=("Mesh", "HTTPRoute", _HEADER_FEATURE, "MeshClusterIPMatching"),
    ),
    Case(
        "MeshConsumerRoute",
        False,
        ("mesh/mesh-consumer-route.yaml",),
        "",
        ((f"{MESH}-consumer", "mesh-echo-add-header"),),
        (
            _mr(E1, "echo-v1.gateway-conformance-mesh", "set", client=f"{MESH}-consumer"),
            _mr(E1, "echo-v1.gateway-conformance-mesh"),
        ),
        features=("Mesh", "HTTPRoute", _HEADER_FEATURE, "MeshConsumerRoute"),
    ),
    Case(
        "MeshPorts",
        False,
        ("mesh/mesh-ports.yaml",),
        "",
        ((MESH, "mesh-split-v1"), (MESH, "mesh-split-v2")),
        (
            _mr(E1, "echo-v1", "v1"),
            _mr(E1, "echo-v1:8080"),
            _mr(E2, "echo-v2", "v2"),
            _mr(E2, "echo-v2:8080", "v2"),
        ),
        features=("Mesh", "HTTPRoute", "HTTPRouteParentRefPort", _HEADER_FEATURE),
    ),
)
