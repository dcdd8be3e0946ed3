"""The kinds Pilotfish understands: their spec schemas, apiVersions and plural names."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from pydantic import BaseModel

from pilotfish.api.core.secret import TOP_LEVEL_FIELDS as _SECRET_FIELDS
from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.networking.destination_rule import DestinationRuleSpec
from pilotfish.api.networking.gateway import GatewaySpec
from pilotfish.api.networking.service_entry import ServiceEntrySpec
from pilotfish.api.networking.sidecar import SidecarSpec
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.runtime.workload import API_VERSION as _RUNTIME_API_VERSION
from pilotfish.api.runtime.workload import WorkloadSpec
from pilotfish.api.security.authorization_policy import AuthorizationPolicySpec
from pilotfish.api.security.common import API_VERSIONS as _SECURITY
from pilotfish.api.security.peer_authentication import PeerAuthenticationSpec
from pilotfish.api.security.request_authentication import RequestAuthenticationSpec
from pilotfish.api.telemetry.telemetry import API_VERSIONS as _TELEMETRY
from pilotfish.api.telemetry.telemetry import TelemetrySpec

__all__ = [
    "API_VERSIONS",
    "KINDS",
    "PREFERRED_API_VERSION",
    "TOP_LEVEL_SPEC_FIELDS",
    "kind_for_plural",
    "plural",
]

_NETWORKING: Final = frozenset(
    {"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}
)

#: kind -> spec schema class. Read-only view: adding a kind is a code change.
KINDS: Final[MappingProxyType[str, type[BaseModel]]] = MappingProxyType(
    {
        "Service": ServiceSpec,
        "VirtualService": VirtualServiceSpec,
        "DestinationRule": DestinationRuleSpec,
        "Gateway": GatewaySpec,
        "ServiceEntry": ServiceEntrySpec,
        "WorkloadEntry": WorkloadEntrySpec,
        "Sidecar": SidecarSpec,
        "Workload": WorkloadSpec,
        "PeerAuthentication": PeerAuthenticationSpec,
        "AuthorizationPolicy": AuthorizationPolicySpec,
        "RequestAuthentication": RequestAuthenticationSpec,
        "Secret": SecretSpec,
        "Telemetry": TelemetrySpec,
    }
)

#: Kinds without a ``spec``: kind -> the top-level document keys that the loader
#: gives to the kind's schema instead (a Secret's ``type``, ``data``...).
TOP_LEVEL_SPEC_FIELDS: Final[MappingProxyType[str, frozenset[str]]] = MappingProxyType(
    {"Secret": _SECRET_FIELDS}
)

#: kind -> apiVersions accepted for it.
API_VERSIONS: Final[MappingProxyType[str, frozenset[str]]] = MappingProxyType(
    {
        "Service": frozenset({"v1"}),
        "VirtualService": _NETWORKING,
        "DestinationRule": _NETWORKING,
        "Gateway": _NETWORKING,
        "ServiceEntry": _NETWORKING,
        "WorkloadEntry": _NETWORKING,
        "Sidecar": _NETWORKING,
        "Workload": frozenset({_RUNTIME_API_VERSION}),
        "PeerAuthentication": _SECURITY,
        "AuthorizationPolicy": _SECURITY,
        "RequestAuthentication": _SECURITY,
        "Secret": frozenset({"v1"}),
        "Telemetry": _TELEMETRY,
    }
)


def _preferred(versions: frozenset[str]) -> str:
    """The newest stable version of a group (``v1``), else the only one accepted."""
    for stable in ("networking.istio.io/v1", "security.istio.io/v1", "telemetry.istio.io/v1"):
        if stable in versions:
            return stable
    return min(versions)


#: kind -> the apiVersion Pilotfish writes.
PREFERRED_API_VERSION: Final[MappingProxyType[str, str]] = MappingProxyType(
    {kind: _preferred(versions) for kind, versions in API_VERSIONS.items()}
)

_PLURALS: Final[MappingProxyType[str, str]] = MappingProxyType(
    {
        "Service": "services",
        "VirtualService": "virtualservices",
        "DestinationRule": "destinationrules",
        "Gateway": "gateways",
        "ServiceEntry": "serviceentries",
        "WorkloadEntry": "workloadentries",
        "Sidecar": "sidecars",
        "Workload": "workloads",
        "PeerAuthentication": "peerauthentications",
        "AuthorizationPolicy": "authorizationpolicies",
        "RequestAuthentication": "requestauthentications",
        "Secret": "secrets",
        "Telemetry": "telemetries",
    }
)
_KIND_BY_PLURAL: Final = MappingProxyType({p: k for k, p in _PLURALS.items()})


def plural(kind: str) -> str:
    """Lower-case plural resource name, as in kubectl and REST paths. KeyError if unknown."""
    return _PLURALS[kind]


def kind_for_plural(name: str) -> str:
    """The kind for a plural (``virtualservices``), also accepting the kind or its
    lower-case singular (``VirtualService``, ``virtualservice``). KeyError if unknown."""
    lowered = name.lower()
    if lowered in _KIND_BY_PLURAL:
        return _KIND_BY_PLURAL[lowered]
    for kind in _PLURALS:
        if kind.lower() == lowered:
            return kind
    raise KeyError(name)
