"""The kinds Pilotfish understands: their spec schemas, apiVersions and plural names."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from pydantic import BaseModel

from pilotfish.api.core.config_map import TOP_LEVEL_FIELDS as _CONFIG_MAP_FIELDS
from pilotfish.api.core.config_map import ConfigMapSpec
from pilotfish.api.core.endpoint_slice import API_VERSION as _DISCOVERY
from pilotfish.api.core.endpoint_slice import TOP_LEVEL_FIELDS as _ENDPOINT_SLICE_FIELDS
from pilotfish.api.core.endpoint_slice import EndpointSliceSpec
from pilotfish.api.core.namespace import NamespaceSpec
from pilotfish.api.core.secret import TOP_LEVEL_FIELDS as _SECRET_FIELDS
from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.core.service_account import TOP_LEVEL_FIELDS as _SERVICE_ACCOUNT_FIELDS
from pilotfish.api.core.service_account import ServiceAccountSpec
from pilotfish.api.core.workloads import API_VERSIONS as _WORKLOAD_API_VERSIONS
from pilotfish.api.core.workloads import WORKLOAD_KINDS
from pilotfish.api.gateway_api import KIND_INFOS as _GATEWAY_API_KINDS
from pilotfish.api.ingress import KIND_INFOS as _INGRESS_KINDS
from pilotfish.api.kind_info import KindInfo
from pilotfish.api.networking.destination_rule import DestinationRuleSpec
from pilotfish.api.networking.gateway import GatewaySpec
from pilotfish.api.networking.service_entry import ServiceEntrySpec
from pilotfish.api.networking.sidecar import SidecarSpec
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.networking.workload_group import WorkloadGroupSpec
from pilotfish.api.runtime.workload import API_VERSION as _RUNTIME_API_VERSION
from pilotfish.api.runtime.workload import WorkloadSpec
from pilotfish.api.security.authorization_policy import AuthorizationPolicySpec
from pilotfish.api.security.common import API_VERSIONS as _SECURITY
from pilotfish.api.security.peer_authentication import PeerAuthenticationSpec
from pilotfish.api.security.request_authentication import RequestAuthenticationSpec
from pilotfish.api.smi import KIND_INFOS as _SMI_KINDS
from pilotfish.api.telemetry.telemetry import API_VERSIONS as _TELEMETRY
from pilotfish.api.telemetry.telemetry import TelemetrySpec

__all__ = [
    "API_VERSIONS",
    "DOCUMENT_KIND",
    "KINDS",
    "KIND_INFO",
    "KNOWN_GROUPS",
    "NON_MESH_KUBERNETES_KINDS",
    "PREFERRED_API_VERSION",
    "SHORT_NAMES",
    "TOP_LEVEL_SPEC_FIELDS",
    "UNAPPLIED_ISTIO_KINDS",
    "api_group",
    "is_ignored_kind",
    "kind_for_plural",
    "plural",
    "resolve_document_kind",
    "unapplied_istio_kind",
]

_NETWORKING: Final = frozenset(
    {"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}
)
_V1: Final = frozenset({"v1"})


def _info(
    kind: str,
    schema: type[BaseModel],
    versions: frozenset[str],
    plural_name: str,
    *short: str,
    top_level: frozenset[str] | None = None,
) -> KindInfo:
    return KindInfo(kind, schema, versions, plural_name, "", top_level, short)


_WORKLOAD_PLURALS: Final = {
    "Pod": ("pods", "po"),
    "Deployment": ("deployments", "deploy"),
    "StatefulSet": ("statefulsets", "sts"),
    "DaemonSet": ("daemonsets", "ds"),
    "ReplicaSet": ("replicasets", "rs"),
    "Job": ("jobs",),
}

_CORE_AND_ISTIO: Final[tuple[KindInfo, ...]] = (
    _info("Service", ServiceSpec, _V1, "services", "svc"),
    _info("VirtualService", VirtualServiceSpec, _NETWORKING, "virtualservices", "vs"),
    _info("DestinationRule", DestinationRuleSpec, _NETWORKING, "destinationrules", "dr"),
    _info("Gateway", GatewaySpec, _NETWORKING, "gateways", "gw"),
    _info("ServiceEntry", ServiceEntrySpec, _NETWORKING, "serviceentries", "se"),
    _info("WorkloadEntry", WorkloadEntrySpec, _NETWORKING, "workloadentries", "we"),
    _info("WorkloadGroup", WorkloadGroupSpec, _NETWORKING, "workloadgroups", "wg"),
    _info("Sidecar", SidecarSpec, _NETWORKING, "sidecars"),
    _info("Workload", WorkloadSpec, frozenset({_RUNTIME_API_VERSION}), "workloads", "wl"),
    _info("PeerAuthentication", PeerAuthenticationSpec, _SECURITY, "peerauthentications", "pa"),
    _info("AuthorizationPolicy", AuthorizationPolicySpec, _SECURITY, "authorizationpolicies", "ap"),
    _info(
        "RequestAuthentication",
        RequestAuthenticationSpec,
        _SECURITY,
        "requestauthentications",
        "ra",
    ),
    _info("Secret", SecretSpec, _V1, "secrets", top_level=_SECRET_FIELDS),
    _info("Telemetry", TelemetrySpec, _TELEMETRY, "telemetries", "telemetry"),
    _info("Namespace", NamespaceSpec, _V1, "namespaces", "ns"),
    _info(
        "ServiceAccount",
        ServiceAccountSpec,
        _V1,
        "serviceaccounts",
        "sa",
        top_level=_SERVICE_ACCOUNT_FIELDS,
    ),
    _info("ConfigMap", ConfigMapSpec, _V1, "configmaps", "cm", top_level=_CONFIG_MAP_FIELDS),
    _info(
        "EndpointSlice",
        EndpointSliceSpec,
        frozenset({_DISCOVERY}),
        "endpointslices",
        top_level=_ENDPOINT_SLICE_FIELDS,
    ),
    *(
        _info(
            kind,
            schema,
            _WORKLOAD_API_VERSIONS[kind],
            _WORKLOAD_PLURALS[kind][0],
            *_WORKLOAD_PLURALS[kind][1:],
        )
        for kind, schema in WORKLOAD_KINDS.items()
    ),
)


#: internal kind -> everything about it. Read-only: adding a kind is a code change.
KIND_INFO: Final[MappingProxyType[str, KindInfo]] = MappingProxyType(
    {
        info.kind: info
        for info in (*_CORE_AND_ISTIO, *_GATEWAY_API_KINDS, *_INGRESS_KINDS, *_SMI_KINDS)
    }
)

#: kind -> spec schema class.
KINDS: Final[MappingProxyType[str, type[BaseModel]]] = MappingProxyType(
    {kind: info.schema for kind, info in KIND_INFO.items()}
)

#: Kinds without a ``spec``: kind -> the top-level document keys that the loader
#: gives to the kind's schema instead (a Secret's ``type``, ``data``...).
TOP_LEVEL_SPEC_FIELDS: Final[MappingProxyType[str, frozenset[str]]] = MappingProxyType(
    {kind: info.top_level_fields for kind, info in KIND_INFO.items() if info.top_level_fields}
)

#: kind -> apiVersions accepted for it.
API_VERSIONS: Final[MappingProxyType[str, frozenset[str]]] = MappingProxyType(
    {kind: info.api_versions for kind, info in KIND_INFO.items()}
)

#: internal kind -> ``kind`` as documents spell it (``KubernetesGateway`` -> ``Gateway``).
DOCUMENT_KIND: Final[MappingProxyType[str, str]] = MappingProxyType(
    {kind: info.written_kind for kind, info in KIND_INFO.items()}
)

#: kubectl / istioctl short names -> internal kind.
SHORT_NAMES: Final[MappingProxyType[str, str]] = MappingProxyType(
    {short: info.kind for info in KIND_INFO.values() for short in info.short_names}
)

_STABLE: Final = (
    "networking.istio.io/v1",
    "security.istio.io/v1",
    "telemetry.istio.io/v1",
    "gateway.networking.k8s.io/v1",
)


def _preferred(versions: frozenset[str]) -> str:
    """The newest stable version of a group (``v1``), else the only one accepted."""
    for stable in _STABLE:
        if stable in versions:
            return stable
    return min(versions)


#: kind -> the apiVersion Pilotfish writes.
PREFERRED_API_VERSION: Final[MappingProxyType[str, str]] = MappingProxyType(
    {kind: _preferred(versions) for kind, versions in API_VERSIONS.items()}
)


def resolve_document_kind(api_version: str, kind: str) -> str | None:
    """The internal kind of a document's ``apiVersion``/``kind`` pair.

    None when ``kind`` is no kind Pilotfish serves. When the spelling is known
    but the apiVersion fits none of its kinds, the first such kind is returned
    (the loader then reports the apiVersion against it).
    """
    matches = [info for info in KIND_INFO.values() if info.written_kind == kind]
    for info in matches:
        if api_version in info.api_versions:
            return info.kind
    group = api_group(api_version)
    for info in matches:  # right group, unsupported version
        if info.group == group:
            return info.kind
    return matches[0].kind if matches else None


def plural(kind: str) -> str:
    """Lower-case plural resource name, as in kubectl and REST paths. KeyError if unknown."""
    return KIND_INFO[kind].plural


def kind_for_plural(name: str, group: str | None = None) -> str:
    """The kind for a plural (``virtualservices``), also accepting the kind or its
    lower-case singular (``VirtualService``, ``virtualservice``) and kubectl's
    qualified form (``gateways.gateway.networking.k8s.io``). ``group`` (as in a
    REST path) picks among kinds sharing a plural; without it, the kind listed
    first wins (Istio's Gateway for ``gateways``). KeyError if unknown."""
    lowered = name.lower()
    if group is None and "." in lowered:
        lowered, _, group = lowered.partition(".")
    for info in KIND_INFO.values():
        if group is not None and info.group != group:
            continue
        if lowered in (info.plural, info.kind.lower(), info.written_kind.lower()):
            return info.kind
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
        "split.smi-spec.io",
        "access.smi-spec.io",
        "specs.smi-spec.io",
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


#: Istio kinds Pilotfish recognises but does not apply, with why: a file of
#: Istio's holding one still passes ``analyze``, and the user learns the object
#: has no effect here instead of reading "unknown kind". (group, kind) ->
#: (warning?, reason). A warning where the user expects the object to change
#: traffic; info where it configures an installation Pilotfish does not have.
UNAPPLIED_ISTIO_KINDS: Final[dict[tuple[str, str], tuple[bool, str]]] = {
    ("networking.istio.io", "EnvoyFilter"): (
        True,
        "is not applied: Pilotfish generates its proxies' Envoy configuration itself "
        "and applies no EnvoyFilter patches to it; ignored",
    ),
    ("extensions.istio.io", "WasmPlugin"): (
        True,
        "is not applied: Pilotfish loads no Wasm plugins into its proxies; ignored",
    ),
    ("install.istio.io", "IstioOperator"): (
        False,
        "configures an Istio installation, which Pilotfish does not have (it is "
        "configured by its own command-line flags: pilotfish up --help); ignored",
    ),
}


def unapplied_istio_kind(api_version: str, kind: str) -> tuple[bool, str] | None:
    """(warning?, reason) for an Istio kind Pilotfish recognises but does not apply."""
    return UNAPPLIED_ISTIO_KINDS.get((api_group(api_version), kind))


def api_group(api_version: str) -> str:
    """The group of an apiVersion: ``apps`` for ``apps/v1``, "" for ``v1``."""
    return api_version.rpartition("/")[0]


def is_ignored_kind(api_version: str, kind: str) -> bool:
    """True for a kind Pilotfish does not model and need not: a foreign group's,
    or a Kubernetes kind of no use to the mesh. A mesh kind never is."""
    internal = resolve_document_kind(api_version, kind)
    if internal is not None and api_version in API_VERSIONS[internal]:
        return False
    return api_group(api_version) not in KNOWN_GROUPS or kind in NON_MESH_KUBERNETES_KINDS
