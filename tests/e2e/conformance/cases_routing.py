"""Extended GATEWAY-HTTP routing tests, ported from upstream's Go (see ``cases``):
CORS, parentRef ``port``, Gateways on port 8080, listener isolation and the
routes a listener must refuse.

Where upstream leaves the backend unchecked (an empty ``Backend`` accepts any
pod) the case names the backend the manifest routes to. Upstream's negative
status tests (``HTTPRouteMustHaveNoAcceptedParents``, ``GatewayMustHaveZeroRoutes``)
are the step ``detached``: the route has one parent, not Accepted, whose
conditions observe the route's generation, and the Gateway counts no route.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import aiohttp
from cases import INFRA, V1, V2, V3, Case, Expect, ListenerWant, _miss, _to
from cases_status import CaseRun
from harness import REQUEST_TIMEOUT, Sender, gateway_address

from polling import poll

_SAME = "same-namespace"
_GROUP = "apis/gateway.networking.k8s.io/v1"
_RESOLVED = "ResolvedRefs"


def _object(run: CaseRun, plural: str, name: str) -> dict[str, Any]:
    return dict(run.api.get(f"{_GROUP}/namespaces/{INFRA}/{plural}/{name}") or {})


def _generation(obj: dict[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 1)


def _route_refused(run: CaseRun, route: str) -> str | None:
    """Why the route is not as upstream's HTTPRouteMustHaveNoAcceptedParents wants."""
    obj = _object(run, "httproutes", route)
    parents = (obj.get("status") or {}).get("parents") or []
    if len(parents) != 1:
        return f"route {route}: {len(parents)} parents in status, want 1"
    conditions = parents[0].get("conditions") or []
    if any(c.get("observedGeneration") != _generation(obj) for c in conditions):
        return f"route {route}: conditions do not observe generation {_generation(obj)}"
    accepted = [c.get("status") for c in conditions if c.get("type") == "Accepted"]
    return None if accepted == ["False"] else f"route {route}: Accepted {accepted}, want False"


def _gateway_empty(run: CaseRun, gateway: str) -> str | None:
    """Why the Gateway is not as upstream's GatewayMustHaveZeroRoutes wants: its
    conditions observe its generation, and it lists no listener or one with no route."""
    obj = _object(run, "gateways", gateway)
    status = obj.get("status") or {}
    if any(c.get("observedGeneration") != _generation(obj) for c in status.get("conditions") or []):
        return f"Gateway {gateway}: conditions do not observe generation {_generation(obj)}"
    listeners = status.get("listeners") or []
    if not listeners or (len(listeners) == 1 and listeners[0].get("attachedRoutes") == 0):
        return None
    counts = {ls.get("name"): ls.get("attachedRoutes") for ls in listeners}
    return f"Gateway {gateway}: listeners {counts}, want none or one with 0 routes"


def detached(route: str, gateway: str) -> Callable[[CaseRun], str | None]:
    """The step of upstream's tests of a route no listener may take."""

    def step(run: CaseRun) -> str | None:
        last: list[str | None] = [None]

        def settled() -> bool:
            last[0] = _route_refused(run, route) or _gateway_empty(run, gateway)
            return last[0] is None

        try:
            poll(settled, f"route {route} refused by Gateway {gateway}", 30)
        except AssertionError:
            return str(last[0])
        return None

    return step


def _refused(name: str, manifest: str, route: str, gateway: str, reason: str, feature: str) -> Case:
    return Case(
        name,
        False,
        (manifest,),
        gateway,
        (),
        conditions=(
            (INFRA, route, _RESOLVED, "True", ""),
            (INFRA, route, "Accepted", "False", reason),
        ),
        features=("Gateway", "HTTPRoute", feature),
        step=detached(route, gateway),
    )


# --- HTTPRouteCORS -------------------------------------------------------------

_FULL_ALLOW = (
    ("access-control-allow-methods", ("GET, OPTIONS", "OPTIONS, GET")),
    ("access-control-allow-headers", ("x-header-1, x-header-2", "x-header-2, x-header-1")),
    ("access-control-expose-headers", ("x-header-3, x-header-4", "x-header-4, x-header-3")),
    ("access-control-max-age", ("3600",)),
    ("access-control-allow-credentials", ("true",)),
)
_ASK = (
    ("access-control-request-method", "GET"),
    ("access-control-request-headers", "x-header-1, x-header-2"),
)
_ALLOW_ORIGIN = "access-control-allow-origin"
_CREDENTIALS = "access-control-allow-credentials"


def _preflight(path: str, origin: str, *asks: tuple[str, str], **kw: Any) -> Expect:
    """A preflight the Gateway answers itself: 200 or 204, not the backend's JSON."""
    kw.setdefault("statuses", (200, 204))
    return Expect(
        path,
        method="OPTIONS",
        headers=(("Origin", origin), *asks),
        not_from_backend=True,
        **kw,
    )


def _full_preflight(origin: str) -> Expect:
    return _preflight(
        "/cors-1",
        origin,
        *_ASK,
        valid_response_headers=((_ALLOW_ORIGIN, (origin,)), *_FULL_ALLOW),
        ignore_whitespace=True,
    )


def _simple(
    path: str, origin: str, *asks: tuple[str, str], method: str = "GET", **kw: Any
) -> Expect:
    return Expect(path, method=method, headers=(("Origin", origin), *asks), backend=V1, **kw)


_PUT = (("access-control-request-method", "PUT"),)
_PUT_ASK = (*_PUT, ("access-control-request-headers", "x-header-1, x-header-2"))
_X12 = ("x-header-1, x-header-2", "x-header-2, x-header-1")
_WILD = "/cors-wildcard-origin"
_WILD_MH = "/cors-wildcard-methods-headers"

_CORS_EXPECTS = (
    _full_preflight("https://www.foo.com"),
    _full_preflight("https://www.bar.com"),
    _full_preflight("https://xpto.www.bar.com"),
    _preflight(
        "/cors-1",
        "https://foobar.com",
        ("access-control-request-method", "GET"),
        statuses=(200, 204, 403),
        absent_response_headers=(_ALLOW_ORIGIN,),
    ),
    _simple(
        "/cors-1",
        "https://www.foo.com",
        *_ASK,
        response_headers=((_ALLOW_ORIGIN, "https://www.foo.com"),),
    ),
    _simple(
        "/cors-1",
        "https://www.bar.com",
        *_ASK,
        response_headers=((_ALLOW_ORIGIN, "https://www.bar.com"),),
    ),
    _simple(
        "/cors-1",
        "https://foobar.com",
        ("access-control-request-method", "GET"),
        absent_response_headers=(_ALLOW_ORIGIN,),
    ),
    _preflight(
        "/cors-2",
        "https://www.foo.com",
        ("access-control-request-method", "POST"),
        valid_response_headers=(("access-control-allow-methods", ("POST", "*")),),
        response_headers=((_ALLOW_ORIGIN, "https://www.foo.com"),),
        absent_response_headers=(_CREDENTIALS,),
    ),
    _preflight(
        "/cors-2",
        "https://www.foo.com",
        ("access-control-request-method", "POST"),
        absent_response_headers=(_CREDENTIALS,),
    ),
    *(
        _preflight(
            _WILD,
            origin,
            *_PUT,
            valid_response_headers=(
                (_ALLOW_ORIGIN, (origin, "*")),
                ("access-control-allow-methods", ("PUT",)),
            ),
            absent_response_headers=(_CREDENTIALS,),
        )
        for origin in ("https://foobar.com", "https://foobar.com:12345")
    ),
    _simple(
        _WILD,
        "https://foobar.com:12345",
        method="PUT",
        valid_response_headers=((_ALLOW_ORIGIN, ("https://foobar.com:12345", "*")),),
    ),
    _simple(
        _WILD,
        "https://foobar.com",
        method="PUT",
        valid_response_headers=((_ALLOW_ORIGIN, ("https://foobar.com", "*")),),
        absent_response_headers=(_CREDENTIALS,),
    ),
    _preflight(
        _WILD_MH,
        "https://other.foo.com",
        *_PUT_ASK,
        valid_response_headers=(
            (_ALLOW_ORIGIN, ("https://other.foo.com",)),
            ("access-control-allow-methods", ("PUT",)),
            ("access-control-allow-headers", _X12),
            (_CREDENTIALS, ("true",)),
        ),
        ignore_whitespace=True,
    ),
    _preflight(
        f"{_WILD_MH}-unauth",
        "https://other.foo.com",
        *_PUT_ASK,
        valid_response_headers=(
            (_ALLOW_ORIGIN, ("https://other.foo.com", "*")),
            ("access-control-allow-methods", ("PUT", "*")),
            ("access-control-allow-headers", (*_X12, "*")),
        ),
        absent_response_headers=(_CREDENTIALS,),
        ignore_whitespace=True,
    ),
    _simple(
        _WILD_MH,
        "https://other.foo.com",
        valid_response_headers=(
            (_ALLOW_ORIGIN, ("https://other.foo.com",)),
            (_CREDENTIALS, ("true",)),
        ),
    ),
    _simple(
        f"{_WILD_MH}-unauth",
        "https://other.foo.com",
        valid_response_headers=((_ALLOW_ORIGIN, ("https://other.foo.com", "*")),),
        absent_response_headers=(_CREDENTIALS,),
    ),
)

_CORS_ROUTES = (
    "cors-multiple-origins-methods-headers",
    "cors-wildcard-methods",
    "cors-wildcard-origin",
    "cors-wildcard-methods-headers",
)

# --- parentRef port, port 8080 -------------------------------------------------

_PORTS_GATEWAY = "httproute-listener-port-matching"


def _on(port: int, host: str, backend: str = "", status: int = 200) -> Expect:
    authority = f"{host}:{port}" if port != 80 else host
    if not backend:
        return _miss("/", status=status, host=authority, port=port)
    return _to(backend, "/", host=authority, port=port)


def _redirect(path: str, scheme: str, to_port: str = "", **kw: Any) -> Expect:
    return Expect(path, status=302, location=(scheme, "example.org", to_port, ""), **kw)


_ON_8080 = "same-namespace-with-http-listener-on-8080"
_ON_443 = "same-namespace-with-https-listener"
_REDIRECT_PORT_AND_SCHEME = (
    _redirect("/scheme-nil-and-port-nil", "http"),
    _redirect("/scheme-nil-and-port-80", "http"),
    _redirect("/scheme-nil-and-port-8080", "http", "8080"),
    _redirect("/scheme-https-and-port-nil", "https"),
    _redirect("/scheme-https-and-port-443", "https"),
    _redirect("/scheme-https-and-port-8443", "https", "8443"),
    _redirect("/scheme-nil-and-port-nil", "http", "8080", gateway=_ON_8080, port=8080),
    _redirect("/scheme-nil-and-port-80", "http", gateway=_ON_8080, port=8080),
    _redirect("/scheme-https-and-port-nil", "https", gateway=_ON_8080, port=8080),
    *(
        _redirect(path, scheme, port, host="example.org", https=True, gateway=_ON_443)
        for path, scheme, port in (
            ("/scheme-nil-and-port-nil", "https", ""),
            ("/scheme-nil-and-port-443", "https", ""),
            ("/scheme-nil-and-port-8443", "https", "8443"),
            ("/scheme-http-and-port-nil", "http", ""),
            ("/scheme-http-and-port-80", "http", ""),
            ("/scheme-http-and-port-8080", "http", "8080"),
        )
    ),
)

# --- GatewayHTTPListenerIsolation ---------------------------------------------

_ISOLATION_PATHS = (
    "/empty-hostname",
    "/wildcard-example-com",
    "/wildcard-foo-example-com",
    "/abc-foo-example-com",
)
_ISOLATION_HOSTS = ("bar.com", "bar.example.com", "bar.foo.example.com", "abc.foo.example.com")


def _isolation(gateway: str) -> tuple[Expect, ...]:
    """Each host reaches only the routes of its own listener (the i-th path)."""
    return tuple(
        _to(V1, path, host=host, gateway=gateway)
        if i == j
        else _miss(path, host=host, gateway=gateway)
        for i, host in enumerate(_ISOLATION_HOSTS)
        for j, path in enumerate(_ISOLATION_PATHS)
    )


_ISOLATED = "http-listener-isolation"
_ISOLATED_X = "http-listener-isolation-with-hostname-intersection"
_ISOLATION_ROUTES = tuple(
    f"attaches-to-{p.strip('/')}{suffix}"
    for suffix in ("", "-with-hostname-intersection")
    for p in _ISOLATION_PATHS
)

_TRUE = (("Accepted", "True"), (_RESOLVED, "True"))

# --- RequestMirror ---------------------------------------------------------------

_MODIFIED = {
    "headers": (("X-Header-Remove", "remove-val"), ("X-Header-Add-Append", "append-val-1")),
    "seen_headers": (
        ("X-Header-Add", "header-val-1"),
        ("X-Header-Add-Append", "append-val-1,header-val-2"),
        ("X-Header-Set", "set-overwrites-values"),
    ),
    "absent_headers": ("X-Header-Remove",),
}


def _mirror(path: str, *to: str, modified: bool = False, percent: float | None = None) -> Expect:
    """Answered by infra-backend-v1, mirrored to ``to``."""
    extra: dict[str, Any] = dict(_MODIFIED) if modified else {}
    return _to(V1, path, mirrored_to=to, mirror_percent=percent, **extra)


def _resolved(*routes: str) -> tuple[tuple[str, str, str, str, str], ...]:
    return tuple((INFRA, r, _RESOLVED, "True", "") for r in routes)


_MIRROR = ("Gateway", "HTTPRoute", "HTTPRouteRequestMirror")

# --- Retry -----------------------------------------------------------------------


def _retry(path: str, succeed_after: int, code: str = "", delay: str = "", **kw: Any) -> Expect:
    """upstream's assertConsistentRetryBehaviour: a fresh uuid per request, the
    simulation's parameters in Go's (sorted) query order, infra-backend-v3 behind."""
    params = {"delayRetry": delay, "responseCode": code, "succeedAfter": str(succeed_after)}
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v)
    status = kw.pop("status", 200)
    if status == 200 and not kw.get("statuses"):
        return _to(V3, f"{path}?{query}&uuid={{uuid}}", **kw)
    return _miss(f"{path}?{query}&uuid={{uuid}}", status=status, **kw)


_R500_3 = "/retry/code-500-attempts-3"
_RALL_2 = "/retry/code-all-attempts-2"
_RETRY = ("Gateway", "HTTPRoute", "HTTPRouteRetry")
_BACKEND_T = "/retry/backend-request-timeout-200ms"
_REQUEST_T = "/retry/request-timeout-200ms"


def _websocket_round_trip(address: str) -> str | None:
    """One websocket dial to ``ws://address/ws``: a text and a binary message must
    come back unchanged (upstream's HTTPRouteBackendProtocolWebSocket)."""

    async def exchange() -> str | None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.ws_connect(f"http://{address}/ws", origin="ws://gateway/ws") as ws,
        ):
            await ws.send_str("Websocket Support!")
            text = await ws.receive_str()
            if text != "Websocket Support!":
                return f"text reply {text!r}"
            await ws.send_bytes(bytes(range(1, 8)))
            data = await ws.receive_bytes()
            return None if data == bytes(range(1, 8)) else f"binary reply {data!r}"

    try:
        return asyncio.run(exchange())
    except (TimeoutError, aiohttp.ClientError, OSError, TypeError) as exc:
        return f"websocket failed: {exc!r}"


def websocket_echoes(run: CaseRun) -> str | None:
    """Dial until one websocket exchange through the Gateway succeeds (bounded)."""
    address = poll(partial(gateway_address, run.api, INFRA, _SAME), "Gateway address")
    last: list[str | None] = ["no attempt"]

    def exchanged() -> bool:
        last[0] = _websocket_round_trip(address)
        return last[0] is None

    try:
        poll(exchanged, "a websocket exchange through the Gateway", 60)
    except AssertionError:
        return str(last[0])
    return None


def backend_set_its_header(sender: Sender) -> str | None:
    """Upstream's HTTPRouteRequestHeaderModifierBackendWeights: in 100 requests each
    answer saw one ``Backend`` header, naming the backend that answered."""
    for i in range(100):
        answer = sender(Expect("/"))
        if answer.status != 200:
            return f"request {i}: status {answer.status}"
        seen = json.loads(answer.body)
        backends = (seen.get("headers") or {}).get("Backend") or []
        if len(backends) != 1:
            return f"request {i}: Backend headers {backends}, want exactly one"
        if not str(seen.get("pod", "")).startswith(backends[0]):
            return f"request {i}: answered by {seen.get('pod')}, Backend header {backends[0]}"
    return None


ROUTING_CASES: tuple[Case, ...] = (
    Case(
        "HTTPRouteBackendProtocolWebSocket",
        False,
        ("httproute-backend-protocol-websocket.yaml",),
        _SAME,
        ((INFRA, "backend-protocol-ws"),),
        features=("Gateway", "HTTPRoute", "HTTPRouteBackendProtocolWebSocket"),
        step=websocket_echoes,
    ),
    Case(
        "HTTPRouteRequestHeaderModifierBackendWeights",
        False,
        ("httproute-request-header-modifier-backend-weights.yaml",),
        _SAME,
        ((INFRA, "request-header-modifier-backend-weights"),),
        (Expect("/"),),
        conditions=_resolved("request-header-modifier-backend-weights"),
        features=("Gateway", "HTTPRoute", "HTTPRouteBackendRequestHeaderModification"),
        check=backend_set_its_header,
    ),
    Case(
        "HTTPRouteBackendRequestRedirect",
        False,
        ("httproute-backend-request-redirect.yaml",),
        _SAME,
        ((INFRA, "backend-request-redirect"),),
        (
            Expect("/full/original", status=302, location=("", "", "", "/redirected-full")),
            Expect(
                "/prefix/original", status=302, location=("", "", "", "/redirected-prefix/original")
            ),
        ),
        conditions=_resolved("backend-request-redirect"),
        features=("Gateway", "HTTPRoute", "HTTPRouteBackendRequestRedirect"),
    ),
    Case(
        "HTTPRouteBackendURLRewrite",
        False,
        ("httproute-backend-url-rewrite.yaml",),
        _SAME,
        ((INFRA, "backend-url-rewrite"),),
        (
            _to(V1, "/full/original", seen_path="/rewritten-full"),
            _to(V1, "/prefix/original", seen_path="/rewritten-prefix/original"),
        ),
        conditions=_resolved("backend-url-rewrite"),
        features=("Gateway", "HTTPRoute", "HTTPRouteBackendURLRewrite"),
    ),
    Case(
        "HTTPRouteRetry",
        False,
        ("httproute-retry.yaml",),
        _SAME,
        ((INFRA, "retries"),),
        (
            _retry(_R500_3, 2, "500"),
            _retry(_R500_3, 4, "500", status=500),
            _retry(_R500_3, 2, "503", status=503),
            *(
                e
                for code in ("500", "502", "503", "504")
                for e in (_retry(_RALL_2, 1, code), _retry(_RALL_2, 3, code, status=int(code)))
            ),
        ),
        conditions=_resolved("retries"),
        features=_RETRY,
    ),
    Case(
        "HTTPRouteRetryConnectionError",
        False,
        ("httproute-retry-connection-error.yaml",),
        _SAME,
        ((INFRA, "retries-connection-error"),),
        (
            _retry("/retry/no-status-code-attempts-3", 2),
            _retry("/retry/no-status-code-attempts-3", 4, statuses=(500, 503)),
        ),
        conditions=_resolved("retries-connection-error"),
        features=(*_RETRY, "HTTPRouteRetryConnectionError"),
    ),
    Case(
        "HTTPRouteRetryWithTimeouts",
        False,
        ("httproute-retry-with-timeouts.yaml",),
        _SAME,
        ((INFRA, "retries-with-timeouts"),),
        (
            _retry(_BACKEND_T, 2, "500", "300ms"),
            _retry(_BACKEND_T, 3, "500", "300ms", status=504),
            _retry(_REQUEST_T, 1, "500"),
            _retry(_REQUEST_T, 4, "500", "100ms", status=504),
        ),
        conditions=_resolved("retries-with-timeouts"),
        features=(
            "Gateway",
            "HTTPRoute",
            "HTTPRouteBackendTimeout",
            "HTTPRouteRequestTimeout",
            "HTTPRouteRetry",
            "HTTPRouteRetryBackendTimeout",
        ),
    ),
    Case(
        "HTTPRouteRequestMirror",
        False,
        ("httproute-request-mirror.yaml",),
        _SAME,
        ((INFRA, "request-mirror"),),
        (_mirror("/mirror", V2), _mirror("/mirror-and-modify-headers", V2, modified=True)),
        features=_MIRROR,
    ),
    Case(
        "HTTPRouteRequestMultipleMirrors",
        False,
        ("httproute-request-multiple-mirrors.yaml",),
        _SAME,
        ((INFRA, "request-multiple-mirrors"),),
        (
            _mirror("/multi-mirror", V2, V3),
            _mirror("/multi-mirror-and-modify-request-headers", V2, V3, modified=True),
        ),
        features=(*_MIRROR, "HTTPRouteRequestMultipleMirrors"),
    ),
    Case(
        "HTTPRouteRequestPercentageMirror",
        False,
        ("httproute-request-percentage-mirror.yaml",),
        _SAME,
        ((INFRA, "request-percentage-mirror"),),
        (
            _mirror("/percent-mirror", V2, percent=20),
            _mirror("/percent-mirror-fraction", V2, percent=50),
            _mirror("/percent-mirror-and-modify-headers", V2, modified=True, percent=35),
        ),
        conditions=_resolved("request-percentage-mirror"),
        features=("Gateway", "HTTPRoute", "HTTPRouteRequestPercentageMirror"),
    ),
    Case(
        "HTTPRouteCORS",
        False,
        ("httproute-cors.yaml",),
        _SAME,
        tuple((INFRA, r) for r in _CORS_ROUTES),
        _CORS_EXPECTS,
        conditions=_resolved(*_CORS_ROUTES),
        features=("Gateway", "HTTPRoute", "HTTPRouteCORS"),
    ),
    Case(
        "HTTPRouteDisallowedKind",
        False,
        ("httproute-disallowed-kind.yaml",),
        "tlsroutes-only",
        (),
        conditions=(
            (INFRA, "disallowed-kind", _RESOLVED, "True", ""),
            (INFRA, "disallowed-kind", "Accepted", "False", "NotAllowedByListeners"),
        ),
        features=("Gateway", "HTTPRoute", "TLSRoute"),
        step=detached("disallowed-kind", "tlsroutes-only"),
    ),
    _refused(
        "HTTPRouteInvalidParentRefNotMatchingListenerPort",
        "httproute-invalid-parentref-not-matching-listener-port.yaml",
        "httproute-listener-not-matching-route-port",
        _SAME,
        "NoMatchingParent",
        "HTTPRouteDestinationPortMatching",
    ),
    _refused(
        "HTTPRouteInvalidParentRefSectionNameNotMatchingPort",
        "httproute-invalid-parentref-section-name-not-matching-port.yaml",
        "httproute-listener-section-name-not-matching-port",
        "gateway-with-one-not-matching-port-and-section-name-route",
        "NoMatchingParent",
        "HTTPRouteParentRefPort",
    ),
    Case(
        "HTTPRouteListenerPortMatching",
        False,
        ("httproute-listener-port-matching.yaml",),
        _PORTS_GATEWAY,
        ((INFRA, "backend-v1"), (INFRA, "backend-v2"), (INFRA, "backend-v3")),
        (
            _on(80, "foo.com", V1),
            _on(8080, "foo.com", V2),
            _on(8080, "bar.com", V2),
            _on(8090, "foo.com", V3),
            _on(8090, "bar.com", status=404),
        ),
        conditions=_resolved("backend-v1", "backend-v2", "backend-v3"),
        features=("Gateway", "HTTPRoute", "HTTPRouteParentRefPort"),
    ),
    Case(
        "GatewayWithAttachedRoutesWithPort8080",
        False,
        ("gateway-with-attached-routes-with-port-8080.yaml",),
        "",
        ((INFRA, "http-route-4-port-8080"),),
        listeners=(
            ListenerWant(
                "gateway-with-two-listeners-and-one-attached-route", "http-unattached", 0, _TRUE
            ),
            ListenerWant("gateway-with-two-listeners-and-one-attached-route", "http", 1, _TRUE),
        ),
        features=("Gateway", "GatewayPort8080", "HTTPRoute"),
    ),
    Case(
        "HTTPRouteRedirectPortAndScheme",
        False,
        ("httproute-redirect-port-and-scheme.yaml",),
        _SAME,
        (
            (INFRA, "http-route-for-listener-on-port-80"),
            (INFRA, "http-route-for-listener-on-port-8080"),
            (INFRA, "http-route-for-listener-on-port-443"),
        ),
        _REDIRECT_PORT_AND_SCHEME,
        conditions=_resolved(
            "http-route-for-listener-on-port-80",
            "http-route-for-listener-on-port-8080",
            "http-route-for-listener-on-port-443",
        ),
        features=("Gateway", "HTTPRoute", "HTTPRoutePortRedirect", "GatewayPort8080"),
    ),
    Case(
        "GatewayHTTPListenerIsolation",
        False,
        (
            "gateway-http-listener-isolation.yaml",
            "gateway-http-listener-isolation-with-hostname-intersection.yaml",
        ),
        _ISOLATED,
        tuple((INFRA, r) for r in _ISOLATION_ROUTES),
        _isolation(_ISOLATED) + _isolation(_ISOLATED_X),
        conditions=_resolved(*_ISOLATION_ROUTES),
        features=("Gateway", "GatewayHTTPListenerIsolation", "HTTPRoute"),
    ),
)

__all__ = ["ROUTING_CASES", "detached"]
