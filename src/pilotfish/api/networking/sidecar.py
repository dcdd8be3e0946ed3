"""Sidecar: what a workload's sidecar sees and accepts (Istio's ``Sidecar`` kind).

- ``egress[].hosts`` (``namespace/dnsName``) limits the services a proxy knows
  about: only those get clusters, routes and virtual hosts;
- ``ingress[]`` replaces the inbound ports derived from Services;
- ``outboundTrafficPolicy`` overrides the mesh config's policy.

Which Sidecar applies to a proxy is decided in ``pilotfish.translate.sidecar_scope``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pilotfish.api.base import ApiModel
from pilotfish.api.networking.common import WorkloadSelector
from pilotfish.api.networking.gateway import ServerTLSSettings

__all__ = [
    "CaptureMode",
    "IstioEgressListener",
    "IstioIngressListener",
    "OutboundTrafficPolicy",
    "SidecarPort",
    "SidecarSpec",
]

CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]


class SidecarPort(ApiModel):
    """Istio's ``SidecarPort``: a port number with its protocol and name."""

    number: int
    protocol: str | None = None
    name: str | None = None
    target_port: int | None = None


class IstioEgressListener(ApiModel):
    """Services reachable through one outbound port (all ports when ``port`` is unset)."""

    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[str] = Field(default_factory=list)


class IstioIngressListener(ApiModel):
    """One inbound port and where its traffic goes in the workload."""

    port: SidecarPort
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: dict[str, Any] | None = None


class OutboundTrafficPolicy(ApiModel):
    mode: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"
    egress_proxy: dict[str, Any] | None = None


class SidecarSpec(ApiModel):
    workload_selector: WorkloadSelector | None = None
    ingress: list[IstioIngressListener] = Field(default_factory=list)
    egress: list[IstioEgressListener] = Field(default_factory=list)
    outbound_traffic_policy: OutboundTrafficPolicy | None = None
    inbound_connection_pool: dict[str, Any] | None = None
