"""GatewayClass and Gateway (``gateway.networking.k8s.io``).

A GatewayClass is cluster-scoped: Pilotfish keys it by name and ignores its
namespace. A Gateway (internal kind ``KubernetesGateway``) lists listeners;
the CRD's CEL rules are enforced here: HTTPS and TLS listeners need ``tls``,
HTTP, TCP and UDP ones must not have it, TCP/UDP listeners take no hostname,
listener names are unique, and no two listeners share port, protocol and
hostname. ``spec.tls`` is the Gateway-wide TLS: ``frontend`` says how HTTPS
listeners validate client certificates (``default``, overridden per port by
``perPort``, whose ports are unique), ``backend.clientCertificateRef`` the
certificate the Gateway presents to TLS backends.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from pilotfish.api.base import ApiModel
from pilotfish.api.gateway_api.common import (
    Hostname,
    LabelSelector,
    ObjectName,
    PortNumber,
    SecretObjectReference,
    SectionName,
)

__all__ = [
    "AllowedRoutes",
    "FrontendTLSConfig",
    "FrontendTLSValidation",
    "GatewayAddress",
    "GatewayBackendTLS",
    "GatewayClassSpec",
    "GatewayInfrastructure",
    "GatewaySpec",
    "GatewayTLSConfig",
    "Listener",
    "ListenerTLSConfig",
    "ObjectReference",
    "ParametersReference",
    "RouteGroupKind",
    "RouteNamespaces",
    "TLSConfig",
    "TLSPortConfig",
]

_DNS: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_CONTROLLER_RE: Final = re.compile(rf"^{_DNS}/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")
_PROTOCOL_RE: Final = re.compile(rf"^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?|{_DNS}/[A-Za-z0-9]+)$")
#: Protocols whose listeners carry TLS settings.
TLS_PROTOCOLS: Final = frozenset({"HTTPS", "TLS"})


class ParametersReference(ApiModel):
    group: str
    kind: str
    name: ObjectName
    namespace: str | None = None


class GatewayClassSpec(ApiModel):
    """Which controller serves Gateways of this class."""

    controller_name: str
    parameters_ref: ParametersReference | None = None
    description: str | None = Field(default=None, max_length=64)

    @field_validator("controller_name")
    @classmethod
    def _controller(cls, value: str) -> str:
        if not _CONTROLLER_RE.match(value) or len(value) > 253:
            raise ValueError(
                f"controllerName {value!r} must be a domain-prefixed path (example.com/bar)"
            )
        return value


class RouteGroupKind(ApiModel):
    group: str = "gateway.networking.k8s.io"
    kind: str


class RouteNamespaces(ApiModel):
    from_: Literal["All", "Same", "Selector"] = Field(default="Same", alias="from")
    selector: LabelSelector | None = None

    @model_validator(mode="after")
    def _selector(self) -> RouteNamespaces:
        if self.from_ == "Selector" and self.selector is None:
            raise ValueError("selector is required when from is Selector")
        return self


class AllowedRoutes(ApiModel):
    namespaces: RouteNamespaces = Field(default_factory=RouteNamespaces)
    kinds: list[RouteGroupKind] = Field(default_factory=list, max_length=8)


class ObjectReference(ApiModel):
    """A reference to an object of any kind (a CA bundle's ConfigMap or Secret)."""

    group: str
    kind: str = Field(min_length=1, max_length=63)
    name: ObjectName
    namespace: str | None = None


class FrontendTLSValidation(ApiModel):
    """How client certificates are validated: against these CA bundles, and whether a
    connection without a valid one is still accepted (``AllowInsecureFallback``)."""

    ca_certificate_refs: list[ObjectReference] = Field(min_length=1, max_length=16)
    mode: Literal["AllowValidOnly", "AllowInsecureFallback"] = "AllowValidOnly"


class TLSConfig(ApiModel):
    validation: FrontendTLSValidation | None = None


class TLSPortConfig(ApiModel):
    port: PortNumber
    tls: TLSConfig


class FrontendTLSConfig(ApiModel):
    default: TLSConfig
    per_port: list[TLSPortConfig] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _unique_ports(self) -> FrontendTLSConfig:
        ports = [p.port for p in self.per_port]
        if len(ports) != len(set(ports)):
            raise ValueError("Port for TLS configuration must be unique within the Gateway")
        return self

    def for_port(self, port: int) -> TLSConfig:
        """The validation settings of HTTPS listeners on ``port``."""
        return next((p.tls for p in self.per_port if p.port == port), self.default)


class GatewayBackendTLS(ApiModel):
    client_certificate_ref: SecretObjectReference | None = None


class GatewayTLSConfig(ApiModel):
    """``spec.tls``: the Gateway's TLS towards clients (frontend) and backends."""

    backend: GatewayBackendTLS | None = None
    frontend: FrontendTLSConfig | None = None


class ListenerTLSConfig(ApiModel):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: list[SecretObjectReference] = Field(default_factory=list, max_length=64)
    options: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _certificates(self) -> ListenerTLSConfig:
        if self.mode == "Terminate" and not self.certificate_refs and not self.options:
            raise ValueError("certificateRefs or options must be set when mode is Terminate")
        return self


class Listener(ApiModel):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: str
    tls: ListenerTLSConfig | None = None
    allowed_routes: AllowedRoutes = Field(default_factory=AllowedRoutes)

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        if not _PROTOCOL_RE.match(value):
            raise ValueError(f"protocol {value!r} is not a valid protocol name")
        return value

    @model_validator(mode="after")
    def _tls_and_hostname(self) -> Listener:
        if self.protocol in TLS_PROTOCOLS and self.tls is None:
            raise ValueError(f"tls is required for protocol {self.protocol}")
        if self.protocol in ("HTTP", "TCP", "UDP") and self.tls is not None:
            raise ValueError(f"tls must not be set for protocol {self.protocol}")
        if self.protocol in ("TCP", "UDP") and self.hostname is not None:
            raise ValueError(f"hostname must not be set for protocol {self.protocol}")
        if self.protocol == "HTTPS" and self.tls and self.tls.mode == "Passthrough":
            raise ValueError("tls.mode Passthrough is only valid for protocol TLS")
        return self


class GatewayAddress(ApiModel):
    type: str = "IPAddress"
    value: str = Field(min_length=1, max_length=253)


class GatewayInfrastructure(ApiModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    parameters_ref: ParametersReference | None = None


class GatewaySpec(ApiModel):
    gateway_class_name: ObjectName
    listeners: list[Listener] = Field(min_length=1, max_length=64)
    addresses: list[GatewayAddress] = Field(default_factory=list, max_length=16)
    infrastructure: GatewayInfrastructure | None = None
    tls: GatewayTLSConfig | None = None

    @model_validator(mode="after")
    def _unique_listeners(self) -> GatewaySpec:
        names: set[str] = set()
        combos: set[tuple[int, str, str]] = set()
        for listener in self.listeners:
            if listener.name in names:
                raise ValueError(f"listener name {listener.name!r} is used more than once")
            names.add(listener.name)
            combo = (listener.port, listener.protocol, listener.hostname or "")
            if combo in combos:
                raise ValueError(
                    f"listener {listener.name!r}: another listener has the same port, "
                    "protocol and hostname"
                )
            combos.add(combo)
        return self
