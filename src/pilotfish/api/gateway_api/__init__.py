"""Kubernetes Gateway API kinds (``gateway.networking.k8s.io``).

Standard channel v1 (v1beta1 spellings accepted), BackendTLSPolicy
v1alpha3/v1, and TLSRoute/TCPRoute v1alpha2 as Istio's samples use them. The
Gateway API's Gateway is internal kind ``KubernetesGateway``; documents and
API responses keep the spelling ``Gateway``. These kinds are served by
converting them to Istio's (``translate/gateway_api``).
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel

from pilotfish.api.gateway_api.common import GROUP
from pilotfish.api.gateway_api.gateway import GatewayClassSpec, GatewaySpec
from pilotfish.api.gateway_api.grpc_route import GRPCRouteSpec
from pilotfish.api.gateway_api.http_route import HTTPRouteSpec
from pilotfish.api.gateway_api.l4_routes import TCPRouteSpec, TLSRouteSpec
from pilotfish.api.gateway_api.policies import BackendTLSPolicySpec, ReferenceGrantSpec
from pilotfish.api.kind_info import KindInfo

__all__ = ["GATEWAY_API_KINDS", "GROUP", "KIND_INFOS"]


def _versions(*versions: str) -> frozenset[str]:
    return frozenset(f"{GROUP}/{v}" for v in versions)


def _kind(
    kind: str,
    schema: type[BaseModel],
    versions: frozenset[str],
    plural: str,
    *short: str,
    document_kind: str = "",
) -> KindInfo:
    return KindInfo(kind, schema, versions, plural, document_kind, None, short)


_STANDARD = _versions("v1", "v1beta1")

#: The Gateway API kinds Pilotfish serves.
KIND_INFOS: Final[tuple[KindInfo, ...]] = (
    _kind("GatewayClass", GatewayClassSpec, _STANDARD, "gatewayclasses", "gc"),
    _kind("KubernetesGateway", GatewaySpec, _STANDARD, "gateways", "gtw", document_kind="Gateway"),
    _kind("HTTPRoute", HTTPRouteSpec, _STANDARD, "httproutes"),
    _kind("GRPCRoute", GRPCRouteSpec, _versions("v1", "v1alpha2"), "grpcroutes"),
    _kind(
        "ReferenceGrant",
        ReferenceGrantSpec,
        _versions("v1", "v1beta1", "v1alpha2"),
        "referencegrants",
        "refgrant",
    ),
    _kind(
        "BackendTLSPolicy",
        BackendTLSPolicySpec,
        _versions("v1", "v1alpha3"),
        "backendtlspolicies",
        "btlspolicy",
    ),
    _kind("TLSRoute", TLSRouteSpec, _versions("v1", "v1alpha2", "v1alpha3"), "tlsroutes"),
    _kind("TCPRoute", TCPRouteSpec, _versions("v1alpha2"), "tcproutes"),
)

#: Internal names of the Gateway API kinds.
GATEWAY_API_KINDS: Final = frozenset(info.kind for info in KIND_INFOS)
