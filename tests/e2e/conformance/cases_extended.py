"""Extended GATEWAY-HTTP conformance tests, ported from upstream's Go (see ``cases``)."""

from __future__ import annotations

from cases import INFRA, V1, V2, V3, Case, Expect, _h, _miss, _to

_SAME = "same-namespace"
_MOD_IN = _h(
    X_Header_Remove="remove-val", X_Header_Add_Append="append-val-1", X_Header_Set="set-val"
)
_MOD_SEEN = _h(
    X_Header_Add="header-val-1",
    X_Header_Add_Append="append-val-1,header-val-2",
    X_Header_Set="set-overwrites-values",
)


def _redirect(
    path: str, status: int = 302, scheme: str = "", host: str = "", to: str = ""
) -> Expect:
    return _miss(path, status=status, location=(scheme, host, "", to))


EXTENDED: tuple[Case, ...] = (
    Case(
        "HTTPRouteMethodMatching",
        False,
        ("httproute-method-matching.yaml",),
        _SAME,
        ((INFRA, "method-matching"),),
        (
            _to(V1, "/", method="POST"),
            _to(V2, "/", method="GET"),
            _miss("/", method="HEAD"),
            _to(V1, "/path1", method="GET"),
            _to(V2, "/", method="PUT", headers=_h(version="one")),
            _to(V3, "/path2", method="POST", headers=_h(version="two")),
            _to(V1, "/path3", method="PATCH"),
            _to(V1, "/path4", method="DELETE", headers=_h(version="three")),
            _miss("/", method="PUT"),
            _miss("/path4", method="DELETE"),
            _to(V1, "/path5", method="PATCH"),
            _to(V2, "/", method="PATCH", headers=_h(version="four")),
        ),
        features=("Gateway", "HTTPRoute", "HTTPRouteMethodMatching"),
    ),
    Case(
        "HTTPRouteQueryParamMatching",
        False,
        ("httproute-query-param-matching.yaml",),
        _SAME,
        ((INFRA, "query-param-matching"),),
        (
            _to(V1, "/?animal=whale"),
            _to(V2, "/?animal=dolphin"),
            _to(V3, "/?animal=dolphin&color=blue"),
            _to(V3, "/?ANIMAL=Whale"),
            _to(V1, "/?animal=whale&otherparam=irrelevant"),
            _to(V2, "/?animal=dolphin&color=yellow"),
            _miss("/?color=blue"),
            _miss("/?animal=dog"),
            _miss("/?animal=whaledolphin"),
            _miss("/"),
            _to(V1, "/path1?animal=whale"),
            _to(V2, "/?animal=whale", headers=_h(version="one")),
            _to(V3, "/path2?animal=whale", headers=_h(version="two")),
            _to(V1, "/path3?animal=shark"),
            _to(V1, "/path4?animal=kraken", headers=_h(version="three")),
            _miss("/?animal=shark"),
            _miss("/path4?animal=kraken"),
            _to(V1, "/path5?animal=hydra"),
            _to(V3, "/?animal=hydra", headers=_h(version="four")),
        ),
        features=("Gateway", "HTTPRoute", "HTTPRouteQueryParamMatching"),
    ),
    Case(
        "HTTPRouteRewritePath",
        False,
        ("httproute-rewrite-path.yaml",),
        _SAME,
        ((INFRA, "rewrite-path"),),
        (
            _to(V1, "/prefix/one/two", seen_path="/one/two"),
            _to(V1, "/strip-prefix/three", seen_path="/three"),
            _to(V1, "/strip-prefix", seen_path="/"),
            _to(V1, "/full/one/two", seen_path="/one"),
            _to(
                V1,
                "/full/rewrite-path-and-modify-headers/test",
                headers=_MOD_IN,
                seen_path="/test",
                seen_headers=_MOD_SEEN,
                absent_headers=("X-Header-Remove",),
            ),
            _to(
                V1,
                "/prefix/rewrite-path-and-modify-headers/one",
                headers=_MOD_IN,
                seen_path="/prefix/one",
                seen_headers=_MOD_SEEN,
                absent_headers=("X-Header-Remove",),
            ),
        ),
        features=("Gateway", "HTTPRoute", "HTTPRoutePathRewrite"),
    ),
    Case(
        "HTTPRouteRewriteHost",
        False,
        ("httproute-rewrite-host.yaml",),
        _SAME,
        ((INFRA, "rewrite-host"),),
        (
            _to(V1, "/one", host="rewrite.example", seen_host="one.example.org"),
            _to(V2, "/two", host="rewrite.example", seen_host="example.org"),
            _to(
                V2,
                "/rewrite-host-and-modify-headers",
                host="rewrite.example",
                headers=_h(X_Header_Remove="remove-val", X_Header_Add_Append="append-val-1"),
                seen_host="test.example.org",
                seen_headers=_MOD_SEEN,
                absent_headers=("X-Header-Remove",),
            ),
        ),
        features=("Gateway", "HTTPRoute", "HTTPRouteHostRewrite"),
    ),
    Case(
        "HTTPRouteRedirectPath",
        False,
        ("httproute-redirect-path.yaml",),
        _SAME,
        ((INFRA, "redirect-path"),),
        (
            _redirect("/original-prefix/lemon", to="/replacement-prefix/lemon"),
            _redirect("/full/path/original", to="/full-path-replacement"),
            _redirect("/path-and-host", host="example.org", to="/replacement-prefix"),
            _redirect("/path-and-status", status=301, to="/replacement-prefix"),
            _redirect("/full-path-and-host", host="example.org", to="/replacement-full"),
            _redirect("/full-path-and-status", status=301, to="/replacement-full"),
        ),
        features=("Gateway", "HTTPRoute", "HTTPRoutePathRedirect"),
    ),
    Case(
        "HTTPRouteRedirectScheme",
        False,
        ("httproute-redirect-scheme.yaml",),
        _SAME,
        ((INFRA, "redirect-scheme"),),
        (
            _redirect("/scheme", scheme="https"),
            _redirect("/scheme-and-host", scheme="https", host="example.org"),
            _redirect("/scheme-and-status", status=301, scheme="https"),
            _redirect("/scheme-and-host-and-status", scheme="https", host="example.org"),
        ),
        features=("Gateway", "HTTPRoute", "HTTPRouteSchemeRedirect"),
    ),
)


def _status_redirect(code: int, path: str) -> Case:
    return Case(
        f"HTTPRoute{code}Redirect",
        False,
        (f"httproute-{code}-redirect.yaml",),
        _SAME,
        ((INFRA, f"{code}-redirect"),),
        (_redirect(path, status=code, to=path),),
        features=("Gateway", "HTTPRoute", f"HTTPRoute{code}RedirectStatusCode"),
    )


def _port(path: str, status: int = 302, host: str = "") -> Expect:
    return _miss(path, status=status, location=("", host, "8083", ""))


EXTENDED += (
    _status_redirect(303, "/see-other"),
    _status_redirect(307, "/temporary"),
    _status_redirect(308, "/permanent"),
    Case(
        "HTTPRouteRedirectPort",
        False,
        ("httproute-redirect-port.yaml",),
        _SAME,
        ((INFRA, "redirect-port"),),
        (
            _port("/port"),
            _port("/port-and-host", host="example.org"),
            _port("/port-and-status", status=301),
            _port("/port-and-host-and-status", host="example.org"),
        ),
        features=("Gateway", "HTTPRoute", "HTTPRoutePortRedirect"),
    ),
)
