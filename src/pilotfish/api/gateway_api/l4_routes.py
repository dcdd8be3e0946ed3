"""TCPRoute and TLSRoute (``gateway.networking.k8s.io`` v1alpha2, as Istio's samples use).

A TCPRoute forwards a listener's connections to weighted backends; a TLSRoute
does the same for TLS connections chosen by SNI (``hostnames``), without
terminating them.
"""

from __future__ import annotations

from pydantic import Field

from pilotfish.api.base import ApiModel
from pilotfish.api.gateway_api.common import BackendRef, Hostname, ParentReference, SectionName

__all__ = ["L4RouteRule", "TCPRouteSpec", "TLSRouteSpec"]


class L4RouteRule(ApiModel):
    name: SectionName | None = None
    backend_refs: list[BackendRef] = Field(min_length=1, max_length=16)


class TCPRouteSpec(ApiModel):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    rules: list[L4RouteRule] = Field(min_length=1, max_length=16)


class TLSRouteSpec(ApiModel):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: list[L4RouteRule] = Field(min_length=1, max_length=16)
