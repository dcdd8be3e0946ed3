"""GATEWAY-HTTP extended tests over HTTP/2, ported from upstream's Go (see ``cases``).

HTTPRouteBackendProtocolH2C sends HTTP/2 with prior knowledge to the Gateway
and needs it to reach the backend's h2c port (``appProtocol:
kubernetes.io/h2c``), where the echo answers only HTTP/2.
HTTPRouteHTTPSListenerDetectMisdirectedRequests sends HTTP/2 over TLS with
a server name and an ``:authority`` that may differ, as a client reusing one
connection for several hosts does: a host the SNI's listener does not serve
is misdirected (421), unless the SNI chose no listener hostname at all.
"""

from __future__ import annotations

from cases import INFRA, V1, V2, V3, Case, Expect

_MISDIRECTED = "/detect-misdirected-requests"


def _sni(server_name: str, host: str, status: int = 200, backend: str = "") -> Expect:
    return Expect(
        _MISDIRECTED,
        host=host,
        server_name=server_name,
        https=True,
        protocol="h2",
        status=status,
        backend=backend,
    )


H2_CASES: tuple[Case, ...] = (
    Case(
        "HTTPRouteBackendProtocolH2C",
        False,
        ("httproute-backend-protocol-h2c.yaml",),
        "same-namespace",
        ((INFRA, "backend-protocol-h2c"),),
        (Expect("/", backend=V1, protocol="h2c"),),
        features=("Gateway", "HTTPRoute", "HTTPRouteBackendProtocolH2C"),
    ),
    Case(
        "HTTPRouteHTTPSListenerDetectMisdirectedRequests",
        False,
        ("httproute-https-listener-detect-misdirected-requests.yaml",),
        "same-namespace-with-https-listener",
        tuple(
            (INFRA, f"https-listener-detect-misdirected-requests-test-{i}") for i in (1, 2, 3, 4)
        ),
        (
            _sni("example.org", "example.org", backend=V1),
            _sni("example.org", "second-example.org", 421),
            _sni("example.org", "unknown-example.org", 404),
            _sni("second-example.org", "second-example.org", backend=V2),
            _sni("second-example.org", "example.org", 421),
            _sni("second-example.org", "unknown-example.org", 421),
            _sni("third-example.wildcard.org", "third-example.wildcard.org", backend=V3),
            _sni("third-example.wildcard.org", "fith-example.wildcard.org", backend=V3),
            _sni("third-example.wildcard.org", "fourth-example.wildcard.org", 421),
            _sni("third-example.wildcard.org", "second-example.org", 421),
            _sni("third-example.wildcard.org", "unknown-example.org", 421),
            # infra-backend-v4 does not exist: upstream reuses v1 for the fourth route.
            _sni("fourth-example.wildcard.org", "fourth-example.wildcard.org", backend=V1),
            _sni("fourth-example.wildcard.org", "fith-example.wildcard.org", 421),
            _sni("unknown-example.org", "example.org", backend=V1),
            _sni("unknown-example.org", "unknown-example.org", 404),
        ),
        conditions=tuple(
            (
                INFRA,
                f"https-listener-detect-misdirected-requests-test-{i}",
                "ResolvedRefs",
                "True",
                "",
            )
            for i in (1, 2, 3, 4)
        ),
        features=("Gateway", "GatewayHTTPSListenerDetectMisdirectedRequests", "HTTPRoute"),
    ),
)
