"""Gateway API conformance tests (GATEWAY-HTTP profile), ported from upstream's Go.

Each ``Case`` is one upstream ``ConformanceTest``: its short name, whether
it is core (only ``SupportGateway`` and ``SupportHTTPRoute`` features) or
extended, the manifests it applies (``tests/testdata/gateway-api-conformance``),
the Gateway it sends to, the routes that must be Accepted first, and its
``http.ExpectedResponse`` list as ``Expect`` records. The expectations are
copied from ``conformance/tests/<file>.go`` at the upstream commit named in
the testdata NOTICE; the harness (``test_conformance_e2e.py``) checks them the
way upstream's ``MakeRequestAndExpectEventuallyConsistentResponse`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INFRA = "gateway-conformance-infra"
WEB = "gateway-conformance-web-backend"
V1, V2, V3 = "infra-backend-v1", "infra-backend-v2", "infra-backend-v3"


@dataclass(frozen=True)
class Expect:
    """One expected exchange: the request, and what must come back / reach the backend."""

    path: str
    host: str = ""
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 200
    backend: str = ""  # the pod name's prefix (the Deployment's name)
    namespace: str = INFRA
    # What the backend must have seen (None: the request as sent).
    seen_path: str | None = None
    seen_host: str | None = None
    # None: the request's own headers (upstream's default ExpectedRequest).
    seen_headers: tuple[tuple[str, str], ...] | None = None
    absent_headers: tuple[str, ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()
    absent_response_headers: tuple[str, ...] = ()
    # Headers the echo backend is asked to set on its response (upstream's
    # BackendSetResponseHeaders, sent as ``X-Echo-Set-Header``).
    backend_sets: tuple[tuple[str, str], ...] = ()
    # A redirect's Location parts (scheme, host, port, path); "" means not checked.
    location: tuple[str, str, str, str] | None = None
    # Another Gateway than the case's (HTTPRouteMultipleGateways).
    gateway: str = ""
    # Sent over TLS to port 443, SNI and Host ``host``, trusting the suite's certificate.
    https: bool = False
    # Mesh cases: the namespace of the echo-v1 client pod that sends the request
    # ("" for gateway-conformance-mesh). ``host`` is then the URL's host[:port]
    # (port 80 when absent); ``{ip:NAME}`` in it is NAME's pod address.
    client: str = ""
    # Upstream's Response.StatusCodes: any of these (when set, instead of ``status``).
    statuses: tuple[int, ...] = ()
    # Upstream's ValidHeaderValues: the response header's value is one of these.
    valid_response_headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Upstream's IgnoreWhitespace: spaces do not count in response header values.
    ignore_whitespace: bool = False
    # The Gateway port to send to (0: 80, or 443 for ``https``).
    port: int = 0
    # The answer must not come from the echo backend (upstream's empty expected
    # namespace: a CORS preflight the Gateway answers itself).
    not_from_backend: bool = False
    # Backends (Deployments in the expectation's namespace) that must log a copy
    # of the request (upstream's MirroredTo), each with ``mirror_percent`` of
    # the requests when set (upstream's MirroredBackend.Percent).
    mirrored_to: tuple[str, ...] = ()
    mirror_percent: float | None = None
    # Upstream's MakeRequestAndExpectFailure: any answer but 200 and the timeout
    # statuses (408, 504) passes.
    failure: bool = False
    # The TLS server name the backend saw (upstream's ExpectedRequest.SNI); "" unchecked.
    seen_sni: str = ""
    # HTTPS requests: the port (upstream's gwAddr with a port) and the client
    # certificate and key to present (PEM bytes), if any.
    tls_port: int = 443
    client_cert: tuple[bytes, bytes] | None = None
    # Upstream's MakeTLSRequestAndExpectEventuallyConsistentFailureResponse: the
    # exchange must fail (handshake refused, connection reset or refused); any
    # answer, whatever its status, is a mismatch.
    refused: bool = False
    # The client certificate (PEM) the TLS backend saw (upstream's
    # ExpectedRequest.ClientCert); empty: unchecked.
    seen_client_cert: bytes = b""
    # Upstream's Request.Protocol: "h2c" (HTTP/2 with prior knowledge, in clear
    # text) or "h2" (HTTP/2 over TLS, by ALPN); "" is HTTP/1.1.
    protocol: str = ""
    # HTTPS requests: the TLS server name when it is not ``host`` (upstream's
    # serverName, which a reused HTTP/2 connection keeps for other hosts).
    server_name: str = ""

    def request_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers to send: the case's, and the echo backend's instruction."""
        if not self.backend_sets:
            return self.headers
        wanted = ",".join(f"{k}:{v}" for k, v in self.backend_sets)
        return (*self.headers, ("X-Echo-Set-Header", wanted))

    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.headers)
        return f"{self.method} {self.host or '-'}{self.path}{extra}"


@dataclass(frozen=True)
class ListenerWant:
    """What one listener's status must say (upstream's GatewayStatusMustHaveListeners):
    its route count, conditions (type, status) and at least these supported kinds."""

    gateway: str  # in gateway-conformance-infra
    listener: str
    attached: int
    conditions: tuple[tuple[str, str], ...]
    kinds: tuple[str, ...] = ("HTTPRoute",)


@dataclass(frozen=True)
class Case:
    name: str
    core: bool
    manifests: tuple[str, ...]
    gateway: str  # a Gateway in gateway-conformance-infra
    routes: tuple[tuple[str, str], ...]  # (namespace, name) that must be Accepted
    expects: tuple[Expect, ...] = ()
    # Set when Pilotfish does not claim the feature: the reason goes into the table.
    not_applicable: str = ""
    # A traffic split to measure after the expectations hold: backend -> share.
    weights: tuple[tuple[str, float], ...] = ()
    # Route conditions to wait for: (namespace, route, type, status, reason); reason ""
    # is any reason, as upstream's checks that leave Reason empty.
    conditions: tuple[tuple[str, str, str, str, str], ...] = ()
    features: tuple[str, ...] = field(default=("Gateway", "HTTPRoute"))
    # Gateway listener statuses to wait for (every listener of each Gateway named).
    listeners: tuple[ListenerWant, ...] = ()
    # A step of the upstream test the tables above cannot say (an edit, hand-made
    # endpoints), run after the statuses and before the requests: given the
    # harness's ``CaseRun``, why it failed or None.
    step: Callable[[Any], str | None] | None = None
    # A check of upstream's test after the expectations hold, given the sender of
    # the case's Gateway (``harness.Sender``): why it failed or None.
    check: Callable[[Any], str | None] | None = None


def _to(backend: str, path: str, **kw: object) -> Expect:
    return Expect(path=path, backend=backend, **kw)  # type: ignore[arg-type]


def _miss(path: str, status: int = 404, **kw: object) -> Expect:
    return Expect(path=path, status=status, **kw)  # type: ignore[arg-type]


def _h(**headers: str) -> tuple[tuple[str, str], ...]:
    return tuple((k.replace("_", "-"), v) for k, v in headers.items())


_SAME = "same-namespace"

CORE: tuple[Case, ...] = (
    Case(
        "HTTPRouteSimpleSameNamespace",
        True,
        ("httproute-simple-same-namespace.yaml",),
        _SAME,
        ((INFRA, "gateway-conformance-infra-test"),),
        (_to(V1, "/"),),
    ),
    Case(
        "HTTPRouteCrossNamespace",
        True,
        ("httproute-cross-namespace.yaml",),
        "backend-namespaces",
        ((WEB, "cross-namespace"),),
        (_to("web-backend", "/", namespace=WEB),),
    ),
    Case(
        "HTTPRouteExactPathMatching",
        True,
        ("httproute-exact-path-matching.yaml",),
        _SAME,
        ((INFRA, "exact-matching"),),
        (
            _to(V1, "/one"),
            _to(V2, "/two"),
            _miss("/"),
            _miss("/one/example"),
            _miss("/two/"),
            _miss("/Two"),
        ),
    ),
    Case(
        "HTTPRouteMatching",
        True,
        ("httproute-matching.yaml",),
        _SAME,
        ((INFRA, "matching"),),
        (
            _to(V1, "/"),
            _to(V1, "/example"),
            _to(V1, "/", headers=_h(Version="one")),
            _to(V2, "/v2"),
            _to(V2, "/v2/example"),
            _to(V2, "/", headers=_h(Version="two")),
            _to(V2, "/v2/"),
            _to(V1, "/v2example"),
            _to(V1, "/foo/v2/example"),
        ),
    ),
    Case(
        "HTTPRouteHeaderMatching",
        True,
        ("httproute-header-matching.yaml",),
        _SAME,
        ((INFRA, "header-matching"),),
        (
            _to(V1, "/", headers=_h(Version="one")),
            _to(V2, "/", headers=_h(Version="two")),
            _to(V1, "/", headers=_h(Version="two", Color="orange")),
            _to(V2, "/", headers=_h(Version="two", Color="blue")),
            _miss("/", headers=_h(Color="orange")),
            _miss("/", headers=_h(Some_Other_Header="one")),
            _to(V1, "/", headers=_h(Color="blue")),
            _to(V1, "/", headers=_h(Color="green")),
            _to(V2, "/", headers=_h(Color="red")),
            _to(V2, "/", headers=_h(Color="yellow")),
            _miss("/", headers=_h(Color="purple")),
        ),
    ),
    Case(
        "HTTPRouteListenerHostnameMatching",
        True,
        ("httproute-listener-hostname-matching.yaml",),
        "httproute-listener-hostname-matching",
        ((INFRA, "backend-v1"), (INFRA, "backend-v2"), (INFRA, "backend-v3")),
        (
            _to(V1, "/", host="bar.com"),
            _to(V2, "/", host="foo.bar.com"),
            _to(V3, "/", host="baz.bar.com"),
            _to(V3, "/", host="boo.bar.com"),
            _to(V3, "/", host="multiple.prefixes.bar.com"),
            _to(V3, "/", host="multiple.prefixes.foo.com"),
            _miss("/", host="foo.com"),
            _miss("/", host="no.matching.host"),
        ),
    ),
    Case(
        "HTTPRouteHostnameIntersection",
        True,
        ("httproute-hostname-intersection.yaml",),
        "httproute-hostname-intersection",
        tuple(
            (INFRA, n)
            for n in (
                "specific-host-matches-listener-specific-host",
                "specific-host-matches-listener-wildcard-host",
                "wildcard-host-matches-listener-specific-host",
                "wildcard-host-matches-listener-wildcard-host",
            )
        ),
        (
            _to(V1, "/s1", host="very.specific.com"),
            _to(V1, "/s1", host="very.specific.com:1234"),
            _miss("/s1", host="non.matching.com"),
            _miss("/s1", host="foo.nonmatchingwildcard.io"),
            _miss("/s1", host="foo.wildcard.io"),
            _miss("/non-matching-prefix", host="very.specific.com"),
            _to(V2, "/s2", host="foo.wildcard.io"),
            _to(V2, "/s2", host="bar.wildcard.io"),
            _to(V2, "/s2", host="foo.bar.wildcard.io"),
            _miss("/s2", host="non.matching.com"),
            _miss("/s2", host="wildcard.io"),
            _miss("/s2", host="very.specific.com"),
            _miss("/non-matching-prefix", host="foo.wildcard.io"),
            _to(V3, "/s3", host="very.specific.com"),
            _miss("/s3", host="non.matching.com"),
            _miss("/s3", host="foo.specific.com"),
            _miss("/s3", host="foo.wildcard.io"),
            _to(V1, "/s4", host="foo.anotherwildcard.io"),
            _to(V1, "/s4", host="bar.anotherwildcard.io"),
            _to(V1, "/s4", host="foo.bar.anotherwildcard.io"),
            _miss("/s4", host="anotherwildcard.io"),
            _miss("/s4", host="foo.wildcard.io"),
            _miss("/s4", host="very.specific.com"),
            _miss("/non-matching-prefix", host="foo.anotherwildcard.io"),
            _miss("/s5", host="specific.but.wrong.com"),
            _miss("/s5", host="wildcard.io"),
        ),
    ),
    Case(
        "HTTPRouteMatchingAcrossRoutes",
        True,
        ("httproute-matching-across-routes.yaml",),
        _SAME,
        ((INFRA, "matching-part1"), (INFRA, "matching-part2")),
        (
            _to(V1, "/", host="example.com"),
            _to(V1, "/example", host="example.com"),
            _to(V1, "/example", host="example.net"),
            _to(V1, "/example", host="example.com", headers=_h(Version="one")),
            _to(V2, "/v2", host="example.com"),
            _to(V1, "/v2", host="example.net"),
            _to(V2, "/v2/example", host="example.com"),
            _to(V2, "/", host="example.com", headers=_h(Version="two")),
        ),
    ),
    Case(
        "HTTPRoutePathMatchOrder",
        True,
        ("httproute-path-match-order.yaml",),
        _SAME,
        ((INFRA, "path-matching-order"),),
        (
            _to(V3, "/match/exact/one"),
            _to(V2, "/match/exact"),
            _to(V1, "/match"),
            _to(V2, "/match/prefix/one/any"),
            _to(V1, "/match/prefix/any"),
            _to(V3, "/match/any"),
        ),
    ),
    Case(
        "HTTPRouteInvalidNonExistentBackendRef",
        True,
        ("httproute-invalid-nonexistent-backendref.yaml",),
        _SAME,
        (),
        (_miss("/", status=500),),
    ),
    Case(
        "HTTPRouteInvalidBackendRefUnknownKind",
        True,
        ("httproute-invalid-backendref-unknown-kind.yaml",),
        _SAME,
        (),
        (_miss("/v2", status=500),),
    ),
    Case(
        "HTTPRouteNoBackendRefs",
        True,
        ("httproute-omitted-backendrefs.yaml",),
        _SAME,
        ((INFRA, "omitted-backendrefs"),),
        (
            _to(V1, "/forward"),
            _miss("/omitted-no-forward", status=500),
            _miss("/empty-no-forward", status=500),
        ),
    ),
    Case(
        "HTTPRouteRedirectHostAndStatus",
        True,
        ("httproute-redirect-host-and-status.yaml",),
        _SAME,
        ((INFRA, "redirect-host-and-status"),),
        (
            _miss("/hostname-redirect", status=302, location=("", "example.org", "", "")),
            _miss("/host-and-status", status=301, location=("", "example.org", "", "")),
        ),
    ),
)


_RHM = "request-header-modifier"
CORE += (
    Case(
        "HTTPRouteRequestHeaderModifier",
        True,
        ("httproute-request-header-modifier.yaml",),
        _SAME,
        ((INFRA, _RHM),),
        (
            _to(
                V1,
                "/set",
                headers=_h(Some_Other_Header="val"),
                seen_headers=_h(Some_Other_Header="val", X_Header_Set="set-overwrites-values"),
            ),
            _to(
                V1,
                "/set",
                headers=_h(Some_Other_Header="val", X_Header_Set="some-other-value"),
                seen_headers=_h(Some_Other_Header="val", X_Header_Set="set-overwrites-values"),
            ),
            _to(
                V1,
                "/add",
                headers=_h(Some_Other_Header="val"),
                seen_headers=_h(Some_Other_Header="val", X_Header_Add="add-appends-values"),
            ),
            _to(
                V1,
                "/add",
                headers=_h(Some_Other_Header="val", X_Header_Add="some-other-value"),
                seen_headers=_h(
                    Some_Other_Header="val", X_Header_Add="some-other-value,add-appends-values"
                ),
            ),
            _to(
                V1,
                "/remove",
                headers=_h(X_Header_Remove="val"),
                seen_headers=(),
                absent_headers=("X-Header-Remove",),
            ),
            _to(
                V1,
                "/multiple",
                headers=_h(
                    X_Header_Set_2="set-val-2",
                    X_Header_Add_2="add-val-2",
                    X_Header_Remove_2="remove-val-2",
                    Another_Header="another-header-val",
                ),
                seen_headers=_h(
                    X_Header_Set_1="header-set-1",
                    X_Header_Set_2="header-set-2",
                    X_Header_Add_1="header-add-1",
                    X_Header_Add_2="add-val-2,header-add-2",
                    X_Header_Add_3="header-add-3",
                    Another_Header="another-header-val",
                ),
                absent_headers=("X-Header-Remove-1", "X-Header-Remove-2"),
            ),
            _to(
                V1,
                "/case-insensitivity",
                headers=(
                    ("x-header-set", "original-val-set"),
                    ("x-header-add", "original-val-add"),
                    ("x-header-remove", "original-val-remove"),
                    ("Another-Header", "another-header-val"),
                ),
                seen_headers=_h(
                    X_Header_Set="header-set",
                    X_Header_Add="original-val-add,header-add",
                    Another_Header="another-header-val",
                ),
                absent_headers=("X-Header-Remove",),
            ),
        ),
    ),
    Case(
        "HTTPRouteReferenceGrant",
        True,
        ("httproute-reference-grant.yaml",),
        _SAME,
        ((INFRA, "reference-grant"),),
        (_to("web-backend", "/", namespace=WEB),),
        features=("Gateway", "HTTPRoute", "ReferenceGrant"),
    ),
    Case(
        "HTTPRouteInvalidCrossNamespaceBackendRef",
        True,
        ("httproute-invalid-cross-namespace-backend-ref.yaml",),
        _SAME,
        ((INFRA, "invalid-cross-namespace-backend-ref"),),
        (_miss("/", status=500),),
        conditions=(
            (
                INFRA,
                "invalid-cross-namespace-backend-ref",
                "ResolvedRefs",
                "False",
                "RefNotPermitted",
            ),
        ),
        features=("Gateway", "HTTPRoute", "ReferenceGrant"),
    ),
    Case(
        "HTTPRouteMultipleGateways",
        True,
        ("httproute-multiple-gateways.yaml",),
        _SAME,
        (
            (INFRA, "multiple-gateways-shared-route"),
            (INFRA, "same-namespace-dedicated-route"),
            (INFRA, "all-namespaces-dedicated-route"),
        ),
        (
            _to(V1, "/shared"),
            _to(V2, "/"),
            _to(V1, "/shared", gateway="all-namespaces"),
            _to(V3, "/", gateway="all-namespaces"),
        ),
    ),
)

_NOT_PERMITTED = ("ResolvedRefs", "False", "RefNotPermitted")
CORE += (
    Case(
        "HTTPRouteInvalidReferenceGrant",
        True,
        ("httproute-invalid-reference-grant.yaml",),
        _SAME,
        ((INFRA, "reference-grant"),),
        (_miss("/", status=500),),
        conditions=((INFRA, "reference-grant", *_NOT_PERMITTED),),
        features=("Gateway", "HTTPRoute", "ReferenceGrant"),
    ),
    Case(
        "HTTPRoutePartiallyInvalidViaInvalidReferenceGrant",
        True,
        ("httproute-partially-invalid-via-invalid-reference-grant.yaml",),
        _SAME,
        ((INFRA, "invalid-reference-grant"),),
        (
            _miss("/v2", status=500),
            _to("app-backend-v1", "/", namespace="gateway-conformance-app-backend"),
        ),
        conditions=((INFRA, "invalid-reference-grant", *_NOT_PERMITTED),),
        features=("Gateway", "HTTPRoute", "ReferenceGrant"),
    ),
    Case(
        "HTTPRouteInvalidCrossNamespaceParentRef",
        True,
        ("httproute-invalid-cross-namespace-parent-ref.yaml",),
        _SAME,
        (),
        (),
        conditions=(
            (
                WEB,
                "invalid-cross-namespace-parent-ref",
                "Accepted",
                "False",
                "NotAllowedByListeners",
            ),
        ),
    ),
    Case(
        "HTTPRouteInvalidParentRefNotMatchingSectionName",
        True,
        ("httproute-invalid-parentref-not-matching-section-name.yaml",),
        _SAME,
        (),
        (),
        conditions=(
            (
                INFRA,
                "httproute-listener-not-matching-section-name",
                "Accepted",
                "False",
                "NoMatchingParent",
            ),
        ),
    ),
)

CORE += (
    Case(
        "HTTPRouteWeight",
        True,
        ("httproute-weight.yaml",),
        _SAME,
        ((INFRA, "weighted-backends"),),
        (Expect("/"),),
        weights=((V1, 0.7), (V2, 0.3), (V3, 0.0)),
    ),
)
