"""Gateway API conformance tests of the GATEWAY-GRPC profile, ported from upstream's Go.

Each ``GrpcCase`` is one upstream ``ConformanceTest`` of
``conformance/tests/grpcroute-*.go`` (commit in the testdata NOTICE), its
``grpc.ExpectedResponse`` list restated as ``GrpcExpect`` records: the
method called (``Echo``, ``EchoTwo``, ``EchoThree``), the metadata and
``:authority`` sent, and what upstream's ``compareResponse`` checks: the
status code and, for OK, the echo's fully qualified method, namespace and
pod name prefix.

GRPCRouteRequestHeaderModifier's upstream expectations also list headers,
which upstream's comparison never reads (and some of which no
implementation could meet: three of its rules share one match, so only the
first one's filter applies). This port checks what the backend saw instead,
with the values the spec gives for the rule that matches (``seen`` and
``unseen``), so the filter itself is tested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cases import INFRA

G1, G2, G3 = "grpc-infra-backend-v1", "grpc-infra-backend-v2", "grpc-infra-backend-v3"
OK, UNIMPLEMENTED = "OK", "UNIMPLEMENTED"


@dataclass(frozen=True)
class GrpcExpect:
    """One expected RPC through the Gateway."""

    method: str = "Echo"
    metadata: tuple[tuple[str, str], ...] = ()
    authority: str = ""
    code: str = OK  # a grpc.StatusCode name
    backend: str = ""  # the pod name's prefix; "" checks no pod
    namespace: str = INFRA
    # Headers the backend must have seen (values of one name joined with ","),
    # and headers it must not have seen; lower-case names, as gRPC metadata has them.
    seen: tuple[tuple[str, str], ...] = ()
    unseen: tuple[str, ...] = ()
    # Upstream's MakeRequestAndExpectEventuallyConsistentFailure: any code but OK.
    failure: bool = False

    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.metadata)
        return f"{self.authority or '-'} {self.method}{extra}"


@dataclass(frozen=True)
class GrpcCase:
    name: str
    core: bool
    manifests: tuple[str, ...]
    gateway: str  # a Gateway in gateway-conformance-infra
    routes: tuple[tuple[str, str], ...]  # GRPCRoutes (namespace, name) that must be Accepted
    expects: tuple[GrpcExpect, ...] = ()
    # A split to measure after the expectations hold (``Echo``): backend -> share.
    weights: tuple[tuple[str, float], ...] = ()
    not_applicable: str = ""
    # As ``Case.step``: run after the statuses, before the RPCs; why it failed or None.
    step: Callable[[Any], str | None] | None = None


def _to(backend: str, method: str = "Echo", **kw: object) -> GrpcExpect:
    return GrpcExpect(method=method, backend=backend, **kw)  # type: ignore[arg-type]


def _miss(method: str = "Echo", **kw: object) -> GrpcExpect:
    return GrpcExpect(method=method, code=UNIMPLEMENTED, namespace="", **kw)  # type: ignore[arg-type]


def _md(**metadata: str) -> tuple[tuple[str, str], ...]:
    return tuple((k.replace("_", "-"), v) for k, v in metadata.items())


def _seen(**headers: str) -> tuple[tuple[str, str], ...]:
    return tuple((k.replace("_", "-").lower(), v) for k, v in headers.items())


_SAME = "same-namespace"
_SET = "set-overwrites-values"
#: GRPCRouteRequestHeaderModifier sends this :authority (upstream's test does).
_SERVICE_AUTHORITY = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho"
_HOSTS = "grpcroute-listener-hostname-matching"

GRPC_CASES: tuple[GrpcCase, ...] = (
    GrpcCase(
        "GRPCExactMethodMatching",
        True,
        ("grpcroute-exact-method-matching.yaml",),
        _SAME,
        ((INFRA, "exact-matching"),),
        (_to(G1, "Echo"), _to(G2, "EchoTwo"), _miss("EchoThree")),
    ),
    GrpcCase(
        "GRPCRouteHeaderMatching",
        True,
        ("grpcroute-header-matching.yaml",),
        _SAME,
        ((INFRA, "grpc-header-matching"),),
        (
            _to(G1, metadata=_md(Version="one")),
            _to(G2, metadata=_md(Version="two")),
            _to(G1, metadata=_md(Version="two", Color="orange")),
            _to(G2, metadata=_md(Version="two", Color="blue")),
            _miss(metadata=_md(Color="orange")),
            _miss(metadata=_md(Some_Other_Header="one")),
            _to(G1, metadata=_md(Color="blue")),
            _to(G1, metadata=_md(Color="green")),
            _to(G2, metadata=_md(Color="red")),
            _to(G2, metadata=_md(Color="yellow")),
            _miss(metadata=_md(Color="purple")),
        ),
    ),
    GrpcCase(
        "GRPCRouteListenerHostnameMatching",
        True,
        ("grpcroute-listener-hostname-matching.yaml",),
        _HOSTS,
        ((INFRA, "backend-v1"), (INFRA, "backend-v2"), (INFRA, "backend-v3")),
        (
            _to(G1, authority="bar.com"),
            _to(G2, authority="foo.bar.com"),
            _to(G3, authority="baz.bar.com"),
            _to(G3, authority="boo.bar.com"),
            _to(G3, authority="multiple.prefixes.bar.com"),
            _to(G3, authority="multiple.prefixes.foo.com"),
            _miss(authority="foo.com"),
            _miss(authority="no.matching.host"),
        ),
    ),
    GrpcCase(
        "GRPCRouteWeight",
        True,
        ("grpcroute-weight.yaml",),
        _SAME,
        ((INFRA, "weighted-backends"),),
        (GrpcExpect("Echo"),),
        weights=((G1, 0.7), (G2, 0.3), (G3, 0.0)),
    ),
    GrpcCase(
        "GRPCRouteNamedRule",
        False,
        ("grpcroute-named-rule.yaml",),
        _SAME,
        ((INFRA, "grpc-named-rules"),),
        (_to(G1, "Echo"), _to(G2, "EchoTwo")),
    ),
    GrpcCase(
        "GRPCRouteRequestHeaderModifier",
        False,
        ("grpcroute-request-header-modifier.yaml",),
        _SAME,
        ((INFRA, "grpc-request-header-modifier"),),
        tuple(
            _to(
                backend, method, authority=_SERVICE_AUTHORITY, metadata=md, seen=seen, unseen=unseen
            )
            for backend, method, md, seen, unseen in (
                # Every Echo call takes the first Echo rule: set X-Header-Set.
                (
                    G1,
                    "Echo",
                    _md(Some_Other_Header="this-header-should-be-set"),
                    _seen(Some_Other_Header="this-header-should-be-set", X_Header_Set=_SET),
                    (),
                ),
                (
                    G1,
                    "Echo",
                    _md(
                        Some_Other_Header="this-header-should-be-set",
                        X_Header_Set="this-value-should-be-overwritten",
                    ),
                    _seen(Some_Other_Header="this-header-should-be-set", X_Header_Set=_SET),
                    (),
                ),
                (
                    G1,
                    "Echo",
                    _md(
                        Some_Other_Header="this-header-should-be-set",
                        X_Header_Add="this-value-should-be-appended",
                    ),
                    _seen(X_Header_Add="this-value-should-be-appended", X_Header_Set=_SET),
                    (),
                ),
                (
                    G1,
                    "Echo",
                    _md(X_Header_Remove="this-should-be-removed"),
                    _seen(X_Header_Remove="this-should-be-removed", X_Header_Set=_SET),
                    (),
                ),
                # EchoTwo has one rule doing all three operations.
                (
                    G2,
                    "EchoTwo",
                    _md(
                        X_Header_Set_2="set-header-2",
                        X_Header_Add_2="add-header-2",
                        X_Header_Remove_2="should-be-removed-2",
                        Some_Other_Header="another-header-val",
                    ),
                    _seen(
                        X_Header_Set_1="header-set-1",
                        X_Header_Set_2="header-set-2",
                        X_Header_Add_1="header-add-1",
                        X_Header_Add_2="add-header-2,header-add-2",
                        Some_Other_Header="another-header-val",
                    ),
                    ("x-header-remove-2",),
                ),
                (
                    G2,
                    "EchoTwo",
                    (
                        ("x-header-set-1", "original-set-1"),
                        ("x-header-add-1", "existing-add-1"),
                        ("x-header-remove-1", "should-be-removed-1"),
                    ),
                    _seen(
                        X_Header_Set_1="header-set-1",
                        X_Header_Set_2="header-set-2",
                        X_Header_Add_1="existing-add-1,header-add-1",
                        X_Header_Add_2="header-add-2",
                    ),
                    ("x-header-remove-1",),
                ),
            )
        ),
    ),
)
