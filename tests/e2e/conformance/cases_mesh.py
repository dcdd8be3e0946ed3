"""MESH-HTTP conformance tests (GAMMA), ported from upstream's ``conformance/tests/mesh``.

Requests go from the ``echo-v1`` pod of ``gateway-conformance-mesh`` (upstream's
``echo.MeshAppEchoV1`` client) to ``http://echo`` (the Service), so the client's
sidecar applies the routes whose parent is that Service.
"""

from __future__ import annotations

from dataclasses import replace

from cases import CORE, Case, Expect, _h
from cases_extended import EXTENDED

MESH = "gateway-conformance-mesh"
E1, E2 = "echo-v1", "echo-v2"


def _to(backend: str, path: str, namespace: str = MESH, **kw: object) -> Expect:
    return Expect(path=path, host="echo", backend=backend, namespace=namespace, **kw)  # type: ignore[arg-type]


def _redirect(path: str, status: int, host: str) -> Expect:
    return Expect(path=path, host="echo", status=status, location=("", host, "", ""))


_RHM = next(c for c in CORE if c.name == "HTTPRouteRequestHeaderModifier")

MESH_CASES: tuple[Case, ...] = (
    Case(
        "MeshBasic", True, (), "", (), (Expect("/", host="echo", status=200),), features=("Mesh",)
    ),
    Case(
        "MeshHTTPRouteSimpleSameNamespace",
        True,
        ("mesh/httproute-simple-same-namespace.yaml",),
        "",
        ((MESH, "gateway-conformance-mesh-test"),),
        (_to(E1, "/"),),
        features=("Mesh", "HTTPRoute"),
    ),
    Case(
        "MeshTrafficSplit",
        True,
        ("mesh/mesh-split.yaml",),
        "",
        ((MESH, "mesh-split"),),
        (_to(E1, "/v1", namespace=""), _to(E2, "/v2", namespace="")),
        features=("Mesh", "HTTPRoute"),
    ),
    Case(
        "MeshHTTPRouteMatching",
        True,
        ("mesh/httproute-matching.yaml",),
        "",
        ((MESH, "mesh-matching"),),
        (
            _to(E1, "/"),
            _to(E1, "/example"),
            _to(E1, "/", headers=_h(Version="one")),
            _to(E2, "/v2"),
            _to(E2, "/v2/example"),
            _to(E2, "/", headers=_h(Version="two")),
            _to(E2, "/v2/"),
            _to(E1, "/v2example"),
            _to(E1, "/foo/v2/example"),
        ),
        features=("Mesh", "HTTPRoute"),
    ),
    Case(
        "MeshHTTPRouteRedirectHostAndStatus",
        True,
        ("mesh/httproute-redirect-host-and-status.yaml",),
        "",
        ((MESH, "mesh-redirect-host-and-status"),),
        (
            _redirect("/hostname-redirect", 302, "example.org"),
            _redirect("/host-and-status", 301, "example.org"),
        ),
        features=("Mesh", "HTTPRoute"),
    ),
    Case(
        "MeshHTTPRouteRequestHeaderModifier",
        True,
        ("mesh/httproute-request-header-modifier.yaml",),
        "",
        ((MESH, "mesh-request-header-modifier"),),
        tuple(replace(e, host="echo", backend=E1, namespace=MESH) for e in _RHM.expects),
        features=("Mesh", "HTTPRoute"),
    ),
)


def _mesh_redirect(
    path: str, status: int = 302, scheme: str = "", host: str = "", to: str = ""
) -> Expect:
    return Expect(path=path, host="echo", status=status, location=(scheme, host, "", to))


def _mesh_status_redirect(code: int, path: str) -> Case:
    return Case(
        f"MeshHTTPRoute{code}Redirect",
        False,
        (f"mesh/httproute-{code}-redirect.yaml",),
        "",
        ((MESH, f"mesh-{code}-redirect"),),
        (_mesh_redirect(path, status=code, to=path),),
        features=("Mesh", "HTTPRoute", f"HTTPRoute{code}RedirectStatusCode"),
    )


_REWRITE = next(c for c in EXTENDED if c.name == "HTTPRouteRewritePath")

MESH_CASES += (
    Case(
        "MeshHTTPRouteWeight",
        True,
        ("mesh/httproute-weight.yaml",),
        "",
        ((MESH, "mesh-weighted-backends"),),
        (Expect("/", host="echo"),),
        weights=((E1, 0.7), (E2, 0.3)),
        features=("Mesh", "HTTPRoute"),
    ),
    _mesh_status_redirect(303, "/redirect"),
    _mesh_status_redirect(307, "/temporary"),
    _mesh_status_redirect(308, "/permanent"),
    Case(
        "MeshHTTPRouteRedirectPath",
        False,
        ("mesh/httproute-redirect-path.yaml",),
        "",
        ((MESH, "mesh-redirect-path"),),
        (
            _mesh_redirect("/original-prefix/lemon", to="/replacement-prefix/lemon"),
            _mesh_redirect("/full/path/original", to="/full-path-replacement"),
            _mesh_redirect("/path-and-host", host="example.org", to="/replacement-prefix"),
            _mesh_redirect("/path-and-status", status=301, to="/replacement-prefix"),
            _mesh_redirect("/full-path-and-host", host="example.org", to="/replacement-full"),
            _mesh_redirect("/full-path-and-status", status=301, to="/replacement-full"),
        ),
        features=("Mesh", "HTTPRoute", "MeshHTTPRouteRedirectPath"),
    ),
    Case(
        "MeshHTTPRouteSchemeRedirect",
        False,
        ("mesh/httproute-redirect-scheme.yaml",),
        "",
        ((MESH, "mesh-redirect-scheme"),),
        (
            _mesh_redirect("/scheme", scheme="https"),
            _mesh_redirect("/scheme-and-host", scheme="https", host="example.org"),
            _mesh_redirect("/scheme-and-status", status=301, scheme="https"),
            _mesh_redirect("/scheme-and-host-and-status", scheme="https", host="example.org"),
        ),
        features=("Mesh", "HTTPRoute", "MeshHTTPRouteSchemeRedirect"),
    ),
    Case(
        "MeshHTTPRouteRewritePath",
        False,
        ("mesh/httproute-rewrite-path.yaml",),
        "",
        ((MESH, "mesh-rewrite-path"),),
        tuple(replace(e, host="echo", backend=E1, namespace="") for e in _REWRITE.expects),
        features=("Mesh", "HTTPRoute", "MeshHTTPRouteRewritePath"),
    ),
)
