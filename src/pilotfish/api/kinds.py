"""The kinds Pilotfish understands: their spec schemas, apiVersions and plural names."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from pydantic import BaseModel

from pilotfish.api.core.config_map import TOP_LEVEL_FIELDS as _CONFIG_MAP_FIELDS
from pilotfish.api.core.config_map import ConfigMapSpec
from pilotfish.api.core.namespace import NamespaceSpec
from pilotfish.api.core.secret import TOP_LEVEL_FIELDS as _SECRET_FIELDS
from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.core.service_account import TOP_LEVEL_FIELDS as _SERVICE_ACCOUNT_FIELDS
from pilotfish.api.core.service_account import ServiceAccountSpec
from pilotfish.api.core.workloads import API_VERSIONS as _WORKLOAD_API_VERSIONS
from pilotfish.api.core.workloads import WORKLOAD_KINDS
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
    "KNOWN_GROUPS",
    "NON_MESH_KUBERNETES_KINDS",
    "PREFERRED_API_VERSION",
    "TOP_LEVEL_SPEC_FIELDS",
    "api_group",
    "is_ignored_kind",
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
        "Namespace": NamespaceSpec,
        "ServiceAccount": ServiceAccountSpec,
        "ConfigMap": ConfigMapSpec,
        **WORKLOAD_KINDS,
    }
)

#: Kinds without a ``spec``: kind -> the top-level document keys that the loader
#: gives to the kind's schema instead (a Secret's ``type``, ``data``...).
TOP_LEVEL_SPEC_FIELDS: Final[MappingProxyType[str, frozenset[str]]] = MappingProxyType(
    {
        "Secret": _SECRET_FIELDS,
        "ServiceAccount": _SERVICE_ACCOUNT_FIELDS,
        "ConfigMap": _CONFIG_MAP_FIELDS,
    }
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
        "Namespace": frozenset({"v1"}),
        "ServiceAccount": frozenset({"v1"}),
        "ConfigMap": frozenset({"v1"}),
        **_WORKLOAD_API_VERSIONS,
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
        "Namespace": "namespaces",
        "ServiceAccount": "serviceaccounts",
        "ConfigMap": "configmaps",
        "Pod": "pods",
        "Deployment": "deployments",
        "StatefulSet": "statefulsets",
        "DaemonSet": "daemonsets",
        "ReplicaSet": "replicasets",
        "Job": "jobs",
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


#: API groups Pilotfish serves, or is expected to serve: an unknown kind in one
#: of them is an error (most likely a typo, or a kind not supported yet). Kinds
#: of any other group belong to another project (Argo, cert-manager,
#: Prometheus, SPIRE...) and are ignored with an informational message.
KNOWN_GROUPS: Final = frozenset(
    {
        "",  # Kubernetes core (v1)
        "apps",
        "batch",
        "networking.k8s.io",
        "gateway.networking.k8s.io",
        "networking.istio.io",
        "security.istio.io",
        "telemetry.istio.io",
        "extensions.istio.io",
        "install.istio.io",
        "pilotfish.io",
    }
)

#: Kubernetes kinds of the groups above that the mesh has no use for: ignored
#: like foreign kinds, since real manifests hold them next to mesh kinds.
NON_MESH_KUBERNETES_KINDS: Final = frozenset(
    {
        "PersistentVolumeClaim",
        "PersistentVolume",
        "Endpoints",
        "LimitRange",
        "ResourceQuota",
        "ReplicationController",
        "PodTemplate",
        "Event",
        "ControllerRevision",
        "CronJob",
        "NetworkPolicy",
    }
)


def api_group(api_version: str) -> str:
    """The group of an apiVersion: ``apps`` for ``apps/v1``, "" for ``v1``."""
    return api_version.rpartition("/")[0]


def is_ignored_kind(api_version: str, kind: str) -> bool:
    """True for a kind Pilotfish does not model and need not: a foreign group's,
    or a Kubernetes kind of no use to the mesh. A mesh kind never is."""
    if kind in KINDS and api_version in API_VERSIONS[kind]:
        return False
    return api_group(api_version) not in KNOWN_GROUPS or kind in NON_MESH_KUBERNETES_KINDS
