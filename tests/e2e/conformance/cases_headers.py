"""Extended GATEWAY-HTTP tests about response headers, ported from upstream's Go
(``httproute-response-header-modifier.go``; see ``cases``). The echo backend
sets the headers each request asks for (``backend_sets``), the route's
ResponseHeaderModifier edits them, and the client checks what arrives."""

from __future__ import annotations

from cases import INFRA, V1, Case, Expect, _h

_SAME = "same-namespace"


def _resp(
    path: str, sets: dict[str, str], want: dict[str, str], absent: tuple[str, ...] = ()
) -> Expect:
    return Expect(
        path=path,
        backend=V1,
        backend_sets=tuple(sets.items()),
        response_headers=tuple(want.items()),
        absent_response_headers=absent,
    )


_RESPONSE_MODIFIER = (
    _resp(
        "/set",
        {"Some-Other-Header": "val"},
        {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"},
    ),
    _resp(
        "/set",
        {"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
        {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"},
    ),
    _resp(
        "/add",
        {"Some-Other-Header": "val"},
        {"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"},
    ),
    _resp(
        "/add",
        {"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
        {"Some-Other-Header": "val", "X-Header-Add": "some-other-value,add-appends-values"},
    ),
    _resp("/remove", {"X-Header-Remove": "val"}, {}, ("X-Header-Remove",)),
    _resp(
        "/multiple",
        {
            "X-Header-Set-2": "set-val-2",
            "X-Header-Add-2": "add-val-2",
            "X-Header-Remove-2": "remove-val-2",
            "Another-Header": "another-header-val",
            "X-Header-Remove-1": "val",
        },
        {
            "X-Header-Set-1": "header-set-1",
            "X-Header-Set-2": "header-set-2",
            "X-Header-Add-1": "header-add-1",
            "X-Header-Add-2": "add-val-2,header-add-2",
            "X-Header-Add-3": "header-add-3",
            "Another-Header": "another-header-val",
        },
        ("X-Header-Remove-1", "X-Header-Remove-2"),
    ),
    _resp(
        "/case-insensitivity",
        {
            "x-header-set": "original-val-set",
            "x-header-add": "original-val-add",
            "x-header-remove": "original-val-remove",
            "Another-Header": "another-header-val",
        },
        {
            "X-Header-Set": "header-set",
            "X-Header-Add": "original-val-add,header-add",
            "X-Lowercase-Add": "lowercase-add",
            "X-Mixedcase-Add-1": "mixedcase-add-1",
            "X-Mixedcase-Add-2": "mixedcase-add-2",
            "X-Uppercase-Add": "uppercase-add",
            "Another-Header": "another-header-val",
        },
        ("x-header-remove", "X-Header-Remove"),
    ),
    Expect(
        path="/response-and-request-header-modifiers",
        backend=V1,
        headers=_h(
            X_Header_Remove="remove-val", X_Header_Add_Append="append-val-1", X_Header_Echo="echo"
        ),
        backend_sets=tuple(
            {
                "X-Header-Set-2": "set-val-2",
                "X-Header-Add-2": "add-val-2",
                "X-Header-Remove-2": "remove-val-2",
                "Another-Header": "another-header-val",
                "X-Header-Remove-1": "remove-val-1",
                "X-Header-Echo": "echo",
            }.items()
        ),
        seen_headers=_h(
            X_Header_Add="header-val-1",
            X_Header_Set="set-overwrites-values",
            X_Header_Add_Append="append-val-1,header-val-2",
            X_Header_Echo="echo",
        ),
        absent_headers=("X-Header-Remove",),
        response_headers=tuple(
            {
                "X-Header-Set-1": "header-set-1",
                "X-Header-Set-2": "header-set-2",
                "X-Header-Add-1": "header-add-1",
                "X-Header-Add-2": "add-val-2,header-add-2",
                "Another-Header": "another-header-val",
                "X-Header-Echo": "echo",
            }.items()
        ),
        absent_response_headers=("X-Header-Remove-1", "X-Header-Remove-2"),
    ),
)

HEADER_CASES: tuple[Case, ...] = (
    Case(
        "HTTPRouteResponseHeaderModifier",
        False,
        ("httproute-response-header-modifier.yaml",),
        _SAME,
        ((INFRA, "response-header-modifier"),),
        _RESPONSE_MODIFIER,
        conditions=((INFRA, "response-header-modifier", "ResolvedRefs", "True", ""),),
        features=("Gateway", "HTTPRoute", "HTTPRouteResponseHeaderModification"),
    ),
)
