"""Istio's annotation registry, as data: every ``*.istio.io`` annotation Istio knows.

Generated from istio/api ``annotation/annotations.yaml`` at commit
b8f8791d9653b2edc77a071d48887e582cfe84bf (1.31.0-alpha.0, the registry
istioctl 1.31 builds ``annotation.AllResourceAnnotations()`` from), keeping
each annotation's name, feature status, deprecation and the resource types it
belongs on. An entry without a ``featureStatus`` is Alpha, as the registry's
generated Go code makes it. To refresh: read the new ``annotations.yaml`` and
rewrite the rows (sorted by name); the meaning of each field is unchanged.

The registry's resource types are Istio's names. ``Gateway`` there means the
Kubernetes Gateway API ``Gateway`` (Pilotfish's ``KubernetesGateway``) for the
annotations Istio's gateway controller reads; Pilotfish also lets it cover
Istio's own ``Gateway``, so an annotation is never called misplaced on either.
``Any`` fits every kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = ["ANNOTATIONS", "ISTIO_RESOURCE_KINDS", "Annotation", "lookup"]


@dataclass(frozen=True, slots=True)
class Annotation:
    name: str
    #: ``Alpha``, ``Beta`` or ``Stable``.
    feature_status: str
    deprecated: bool
    #: The registry's resource types (``Pod``, ``Service``, ``Any``...).
    resources: tuple[str, ...]


def _a(name: str, status: str, deprecated: bool, resources: tuple[str, ...]) -> Annotation:
    return Annotation(name, status or "Alpha", deprecated, resources)


ANNOTATIONS: Final[tuple[Annotation, ...]] = (
    _a("alpha.istio.io/canonical-serviceaccounts", "Alpha", True, ("Service",)),
    _a("alpha.istio.io/kubernetes-serviceaccounts", "Alpha", True, ("Service",)),
    _a("ambient.istio.io/bypass-inbound-capture", "Alpha", False, ("Pod",)),
    _a("ambient.istio.io/dns-capture", "Alpha", False, ("Pod",)),
    _a("ambient.istio.io/redirection", "Beta", False, ("Pod",)),
    _a("ambient.istio.io/waypoint-inbound-binding", "Alpha", False, ("GatewayClass", "Gateway")),
    _a("galley.istio.io/analyze-suppress", "Alpha", False, ("Any",)),
    _a("gateway.istio.io/controller-version", "Alpha", False, ("Any",)),
    _a("gateway.istio.io/name-override", "Alpha", False, ("Gateway",)),
    _a("gateway.istio.io/service-account", "Alpha", False, ("Gateway",)),
    _a("inject.istio.io/templates", "Alpha", False, ("Pod",)),
    _a("istio.io/autoRegistrationGroup", "Alpha", False, ("WorkloadEntry",)),
    _a("istio.io/connectedAt", "Alpha", False, ("WorkloadEntry",)),
    _a("istio.io/disconnectedAt", "Alpha", False, ("WorkloadEntry",)),
    _a("istio.io/dry-run", "Alpha", False, ("AuthorizationPolicy",)),
    _a("istio.io/reroute-virtual-interfaces", "Alpha", False, ("Pod",)),
    _a("istio.io/rev", "Alpha", False, ("Pod",)),
    _a(
        "istio.io/use-waypoint-canary-weight",
        "Alpha",
        False,
        ("Service", "ServiceEntry", "Namespace"),
    ),
    _a("istio.io/workloadController", "Alpha", False, ("WorkloadEntry",)),
    _a("kubernetes.io/ingress.class", "Stable", False, ("Ingress",)),
    _a("networking.istio.io/exportTo", "Alpha", False, ("Service",)),
    _a("networking.istio.io/service-type", "Alpha", False, ("Gateway",)),
    _a(
        "networking.istio.io/traffic-distribution",
        "Alpha",
        False,
        ("Namespace", "Service", "ServiceEntry"),
    ),
    _a("prometheus.istio.io/merge-metrics", "Alpha", False, ("Pod",)),
    _a("proxy.istio.io/config", "Beta", False, ("Pod",)),
    _a("proxy.istio.io/overrides", "Alpha", False, ("Pod",)),
    _a("readiness.status.sidecar.istio.io/applicationPorts", "Alpha", False, ("Pod",)),
    _a("readiness.status.sidecar.istio.io/failureThreshold", "Alpha", False, ("Pod",)),
    _a("readiness.status.sidecar.istio.io/initialDelaySeconds", "Alpha", False, ("Pod",)),
    _a("readiness.status.sidecar.istio.io/periodSeconds", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/agentLogLevel", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/bootstrapOverride", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/componentLogLevel", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/discoveryAddress", "Alpha", True, ("Pod",)),
    _a("sidecar.istio.io/extraStatTags", "Alpha", True, ("Pod",)),
    _a("sidecar.istio.io/inject", "Beta", True, ("Pod",)),
    _a("sidecar.istio.io/interceptionMode", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/logLevel", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/nativeSidecar", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/proxyCPU", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/proxyCPULimit", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/proxyImage", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/proxyImageType", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/proxyMemory", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/proxyMemoryLimit", "", False, ("Pod",)),
    _a("sidecar.istio.io/rewriteAppHTTPProbers", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/statsCompression", "Alpha", True, ("Pod",)),
    _a("sidecar.istio.io/statsEvictionInterval", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/statsFlushInterval", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/statsHistogramBins", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/statsHistogramBuckets", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/statsInclusionPrefixes", "Alpha", True, ("Pod",)),
    _a("sidecar.istio.io/statsInclusionRegexps", "Alpha", True, ("Pod",)),
    _a("sidecar.istio.io/statsInclusionSuffixes", "Alpha", True, ("Pod",)),
    _a("sidecar.istio.io/status", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/userVolume", "Alpha", False, ("Pod",)),
    _a("sidecar.istio.io/userVolumeMount", "", False, ("Pod",)),
    _a("status.sidecar.istio.io/port", "Alpha", False, ("Pod",)),
    _a("topology.istio.io/controlPlaneClusters", "Alpha", False, ("Namespace",)),
    _a("traffic.istio.io/nodeSelector", "Stable", False, ("Service",)),
    _a("traffic.sidecar.istio.io/excludeInboundPorts", "Alpha", False, ("Pod",)),
    _a("traffic.sidecar.istio.io/excludeInterfaces", "Alpha", False, ("Pod",)),
    _a("traffic.sidecar.istio.io/excludeOutboundIPRanges", "Alpha", False, ("Pod",)),
    _a("traffic.sidecar.istio.io/excludeOutboundPorts", "Alpha", False, ("Pod",)),
    _a("traffic.sidecar.istio.io/includeInboundPorts", "", False, ("Pod",)),
    _a("traffic.sidecar.istio.io/includeOutboundIPRanges", "Alpha", False, ("Pod",)),
    _a("traffic.sidecar.istio.io/includeOutboundPorts", "Alpha", False, ("Pod",)),
    _a("traffic.sidecar.istio.io/kubevirtInterfaces", "Alpha", True, ("Pod",)),
)

#: The registry's resource type -> the Pilotfish kinds it covers.
ISTIO_RESOURCE_KINDS: Final = MappingProxyType(
    {
        "AuthorizationPolicy": ("AuthorizationPolicy",),
        "Gateway": ("KubernetesGateway", "Gateway"),
        "GatewayClass": ("GatewayClass",),
        "Ingress": ("Ingress",),
        "Namespace": ("Namespace",),
        "Pod": ("Pod",),
        "Service": ("Service",),
        "ServiceEntry": ("ServiceEntry",),
        "WorkloadEntry": ("WorkloadEntry",),
    }
)

_BY_NAME: Final = MappingProxyType({a.name: a for a in ANNOTATIONS})


def lookup(name: str) -> Annotation | None:
    return _BY_NAME.get(name)
