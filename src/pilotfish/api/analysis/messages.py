# ruff: noqa: E501  (Istio's message texts, kept whole)
"""Istio's analyzer message catalogue (``pkg/config/analysis/msg/messages.yaml``), as data.

Each ``Message`` is one of Istio's message types: its code (``IST0101``), name,
level and the meaning of the finding. Pilotfish findings that report the same
problem as an Istio analyzer carry the code, and ``analyze`` gives them the
catalogue's level, so ``--failure-threshold`` and ``--suppress`` behave as
with ``istioctl analyze``. ``template`` is Istio's message text with its
``%s``-style parameters, kept for reference (Pilotfish's own wording is more
specific: it names the field and line).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pilotfish.api.diagnostics import Severity

__all__ = ["MESSAGES", "Message", "by_code", "by_name", "documentation_url"]


@dataclass(frozen=True, slots=True)
class Message:
    code: str
    name: str
    level: Severity
    description: str
    template: str


def _m(code: str, name: str, level: str, description: str, template: str) -> Message:
    return Message(code, name, Severity(level.lower()), description, template)


MESSAGES: Final[tuple[Message, ...]] = (
    _m(
        "IST0001",
        "InternalError",
        "Error",
        "There was an internal error in the toolchain. This is almost always a bug in the implementation.",
        "Internal error: %v",
    ),
    _m(
        "IST0002",
        "Deprecated",
        "Warning",
        "A feature that the configuration is depending on is now deprecated.",
        "Deprecated: %s",
    ),
    _m(
        "IST0101",
        "ReferencedResourceNotFound",
        "Error",
        "A resource being referenced does not exist.",
        "Referenced %s not found: %q",
    ),
    _m(
        "IST0102",
        "NamespaceNotInjected",
        "Info",
        "A namespace is not enabled for Istio injection.",
        "The namespace is not enabled for Istio injection. Run 'kubectl label namespace %s istio-injection=enabled' to enable it, or 'kubectl label namespace %s istio-injection=disabled' to explicitly mark it as not needing injection.",
    ),
    _m(
        "IST0103",
        "PodMissingProxy",
        "Warning",
        "A pod is missing the Istio proxy.",
        "The pod %s is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload.",
    ),
    _m(
        "IST0106",
        "SchemaValidationError",
        "Error",
        "The resource has a schema validation error.",
        "Schema validation error: %v",
    ),
    _m(
        "IST0107",
        "MisplacedAnnotation",
        "Warning",
        "An Istio annotation is applied to the wrong kind of resource.",
        "Misplaced annotation: %s can only be applied to %s",
    ),
    _m(
        "IST0108",
        "UnknownAnnotation",
        "Warning",
        "An Istio annotation is not recognized for any kind of resource",
        "Unknown annotation: %s",
    ),
    _m(
        "IST0109",
        "ConflictingMeshGatewayVirtualServiceHosts",
        "Error",
        "Conflicting hosts on VirtualServices associated with mesh gateway",
        "The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.",
    ),
    _m(
        "IST0110",
        "ConflictingSidecarWorkloadSelectors",
        "Error",
        "A Sidecar resource selects the same workloads as another Sidecar resource",
        "The Sidecars %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.",
    ),
    _m(
        "IST0111",
        "MultipleSidecarsWithoutWorkloadSelectors",
        "Error",
        "More than one sidecar resource in a namespace has no workload selector",
        "The Sidecars %v in namespace %q have no workload selector, which can lead to undefined behavior.",
    ),
    _m(
        "IST0112",
        "VirtualServiceDestinationPortSelectorRequired",
        "Error",
        "A VirtualService routes to a service with more than one port exposed, but does not specify which to use.",
        "This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in the destination is required to disambiguate.",
    ),
    _m(
        "IST0116",
        "DeploymentAssociatedToMultipleServices",
        "Warning",
        "The resulting pods of a service mesh deployment can't be associated with multiple services using the same port but different protocols.",
        "This deployment %s is associated with multiple services using port %d but different protocols: %v",
    ),
    _m(
        "IST0118",
        "PortNameIsNotUnderNamingConvention",
        "Info",
        "Port name is not under naming convention. Protocol detection is applied to the port.",
        "Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port.",
    ),
    _m(
        "IST0123",
        "NamespaceMultipleInjectionLabels",
        "Warning",
        "A namespace has more than one type of injection labels",
        "The namespace has more than one type of injection labels %v, which may lead to undefined behavior. Make sure only one injection label exists.",
    ),
    _m(
        "IST0125",
        "InvalidAnnotation",
        "Warning",
        "An Istio annotation that is not valid",
        "Invalid annotation %s: %s",
    ),
    _m(
        "IST0126",
        "UnknownMeshNetworksServiceRegistry",
        "Error",
        "A service registry in Mesh Networks is unknown",
        "Unknown service registry %s in network %s",
    ),
    _m(
        "IST0127",
        "NoMatchingWorkloadsFound",
        "Warning",
        "There aren't workloads matching the resource labels",
        "No matching workloads for this resource with the following labels: %s",
    ),
    _m(
        "IST0128",
        "NoServerCertificateVerificationDestinationLevel",
        "Warning",
        "No caCertificates are set in DestinationRule, this results in no verification of presented server certificate.",
        "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s",
    ),
    _m(
        "IST0129",
        "NoServerCertificateVerificationPortLevel",
        "Warning",
        "No caCertificates are set in DestinationRule, this results in no verification of presented server certificate for traffic to a given port.",
        "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s at port %s",
    ),
    _m(
        "IST0130",
        "VirtualServiceUnreachableRule",
        "Warning",
        "A VirtualService rule will never be used because a previous rule uses the same match.",
        "VirtualService rule %v not used (%s).",
    ),
    _m(
        "IST0131",
        "VirtualServiceIneffectiveMatch",
        "Info",
        "A VirtualService rule match duplicates a match in a previous rule.",
        "VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v).",
    ),
    _m(
        "IST0132",
        "VirtualServiceHostNotFoundInGateway",
        "Warning",
        "Host defined in VirtualService not found in Gateway.",
        "one or more host %v defined in VirtualService %s not found in Gateway %s.",
    ),
    _m(
        "IST0133",
        "SchemaWarning",
        "Warning",
        "The resource has a schema validation warning.",
        "Schema validation warning: %v",
    ),
    _m(
        "IST0134",
        "ServiceEntryAddressesRequired",
        "Warning",
        "Virtual IP addresses are required for ports serving TCP (or unset) protocol when PILOT_ENABLE_IP_AUTOALLOCATE is not set on a proxy",
        "ServiceEntry addresses are required for this protocol.",
    ),
    _m(
        "IST0135",
        "DeprecatedAnnotation",
        "Info",
        "A resource is using a deprecated Istio annotation.",
        "Annotation %q has been deprecated%s and may not work in future Istio versions.",
    ),
    _m(
        "IST0136",
        "AlphaAnnotation",
        "Info",
        "An Istio annotation may not be suitable for production.",
        "Annotation %q is part of an alpha-phase feature and may be incompletely supported.",
    ),
    _m(
        "IST0137",
        "DeploymentConflictingPorts",
        "Warning",
        "Two services selecting the same workload with the same targetPort MUST refer to the same port.",
        "This deployment %s is associated with multiple services %v using targetPort %q but different ports: %v.",
    ),
    _m(
        "IST0138",
        "GatewayDuplicateCertificate",
        "Warning",
        "Duplicate certificate in multiple gateways may cause 404s if clients re-use HTTP2 connections.",
        "Duplicate certificate in multiple gateways %v may cause 404s if clients re-use HTTP2 connections.",
    ),
    _m(
        "IST0139",
        "InvalidWebhook",
        "Error",
        "Webhook is invalid or references a control plane service that does not exist.",
        "%v",
    ),
    _m(
        "IST0140",
        "IngressRouteRulesNotAffected",
        "Warning",
        "Route rules have no effect on ingress gateway requests",
        "Subset in virtual service %s has no effect on ingress gateway %s requests",
    ),
    _m(
        "IST0141",
        "InsufficientPermissions",
        "Error",
        "Required permissions to install Istio are missing.",
        "Missing required permission to create resource %v (%v)",
    ),
    _m(
        "IST0142",
        "UnsupportedKubernetesVersion",
        "Error",
        "The Kubernetes version is not supported",
        "The Kubernetes Version %q is lower than the minimum version: %v",
    ),
    _m(
        "IST0143",
        "LocalhostListener",
        "Error",
        "A port exposed in a Service is bound to a localhost address",
        "Port %v is exposed in a Service but listens on localhost. It will not be exposed to other pods.",
    ),
    _m(
        "IST0144",
        "InvalidApplicationUID",
        "Warning",
        "Application pods should not run as user ID (UID) 1337",
        "User ID (UID) 1337 is reserved for the sidecar proxy.",
    ),
    _m(
        "IST0145",
        "ConflictingGateways",
        "Error",
        "Gateway should not have the same selector, port and matched hosts of server",
        "Conflict with gateways %s (workload selector %s, port %s, hosts %v).",
    ),
    _m(
        "IST0146",
        "ImageAutoWithoutInjectionWarning",
        "Warning",
        "Deployments with `image: auto` should be targeted for injection.",
        "%s %s contains `image: auto` but does not match any Istio injection webhook selectors.",
    ),
    _m(
        "IST0147",
        "ImageAutoWithoutInjectionError",
        "Error",
        "Pods with `image: auto` should be targeted for injection.",
        "%s %s contains `image: auto` but does not match any Istio injection webhook selectors.",
    ),
    _m(
        "IST0148",
        "NamespaceInjectionEnabledByDefault",
        "Info",
        "user namespace should be injectable if Istio is installed with enableNamespacesByDefault enabled and neither injection label is set.",
        "is enabled for Istio injection, as Istio is installed with enableNamespacesByDefault as true.",
    ),
    _m(
        "IST0149",
        "JwtClaimBasedRoutingWithoutRequestAuthN",
        "Error",
        "Virtual service using JWT claim based routing without request authentication.",
        "The virtual service uses the JWT claim based routing (key: %s) but found no request authentication for the gateway (%s) pod (%s). The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing.",
    ),
    _m(
        "IST0150",
        "ExternalNameServiceTypeInvalidPortName",
        "Warning",
        "Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly for ExternalName services.",
        "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly",
    ),
    _m(
        "IST0151",
        "EnvoyFilterUsesRelativeOperation",
        "Warning",
        "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
        "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
    ),
    _m(
        "IST0152",
        "EnvoyFilterUsesReplaceOperationIncorrectly",
        "Error",
        "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.",
        "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.",
    ),
    _m(
        "IST0153",
        "EnvoyFilterUsesAddOperationIncorrectly",
        "Error",
        "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
        "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
    ),
    _m(
        "IST0154",
        "EnvoyFilterUsesRemoveOperationIncorrectly",
        "Error",
        "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
        "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
    ),
    _m(
        "IST0155",
        "EnvoyFilterUsesRelativeOperationWithProxyVersion",
        "Warning",
        "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
        "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
    ),
    _m(
        "IST0156",
        "UnsupportedGatewayAPIVersion",
        "Error",
        "The Gateway API CRD version is not supported",
        "The Gateway API CRD version %v is lower than the minimum version: %v",
    ),
    _m(
        "IST0157",
        "InvalidTelemetryProvider",
        "Warning",
        "The Telemetry with empty providers will be ignored",
        "The Telemetry %v in namespace %q with empty providers will be ignored.",
    ),
    _m(
        "IST0158",
        "PodsIstioProxyImageMismatchInNamespace",
        "Warning",
        "The Istio proxy image of the pods running in the namespace do not match the image defined in the injection configuration.",
        "The Istio proxy images of the pods running in the namespace do not match the image defined in the injection configuration (pod names: %v). This often happens after upgrading the Istio control-plane and can be fixed by redeploying the pods.",
    ),
    _m(
        "IST0159",
        "ConflictingTelemetryWorkloadSelectors",
        "Error",
        "A Telemetry resource selects the same workloads as another Telemetry resource",
        "The Telemetries %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.",
    ),
    _m(
        "IST0160",
        "MultipleTelemetriesWithoutWorkloadSelectors",
        "Error",
        "More than one telemetry resource in a namespace has no workload selector",
        "The Telemetries %v in namespace %q have no workload selector, which can lead to undefined behavior.",
    ),
    _m(
        "IST0161",
        "InvalidGatewayCredential",
        "Error",
        "The credential provided for the Gateway resource is invalid",
        "The credential referenced by the Gateway %s in namespace %s is invalid, which can cause the traffic not to work as expected.",
    ),
    _m(
        "IST0162",
        "GatewayPortNotDefinedOnService",
        "Warning",
        "Gateway port not exposed by service",
        "The gateway is listening on a target port (port %d) that is not defined in the Service associated with its workload instances (Pod selector %s). If you need to access the gateway port through the gateway Service, it will not be available.",
    ),
    _m(
        "IST0163",
        "InvalidExternalControlPlaneConfig",
        "Warning",
        "Address for the ingress gateway on the external control plane is not valid",
        "The hostname (%s) that was provided for the webhook (%s) to reach the ingress gateway on the external control plane cluster %s. Traffic may not flow properly.",
    ),
    _m(
        "IST0164",
        "ExternalControlPlaneAddressIsNotAHostname",
        "Info",
        "Address for the ingress gateway on the external control plane is an IP address and not a hostname",
        "The address (%s) that was provided for the webhook (%s) to reach the ingress gateway on the external control plane cluster is an IP address. This is not recommended for a production environment.",
    ),
    _m(
        "IST0165",
        "ReferencedInternalGateway",
        "Warning",
        "VirtualServices should not reference internal Gateways.",
        "Gateway reference in VirtualService %s is to an implementation-generated internal Gateway: %s.",
    ),
    _m(
        "IST0166",
        "IneffectiveSelector",
        "Warning",
        "Selector has no effect when applied to Kubernetes Gateways.",
        "Ineffective selector on Kubernetes Gateway %s. Use the TargetRef field instead.",
    ),
    _m(
        "IST0167",
        "IneffectivePolicy",
        "Warning",
        "The policy applied has no impact.",
        "The policy has no impact: %s.",
    ),
    _m(
        "IST0168",
        "UnknownUpgradeCompatibility",
        "Warning",
        "We cannot automatically detect whether a change is fully compatible or not",
        "The configuration %q changed in release %s, but compatibility cannot be automatically detected: %s. Or, install with `--set compatibilityVersion=%s` to retain the old default.",
    ),
    _m(
        "IST0169",
        "UpdateIncompatibility",
        "Warning",
        "The provided configuration object may be incompatible due to an upgrade",
        "The configuration %q changed in release %s: %s. Or, install with `--set compatibilityVersion=%s` to retain the old default.",
    ),
    _m(
        "IST0170",
        "MultiClusterInconsistentService",
        "Warning",
        "The services live in different clusters under multi-cluster deployment model are inconsistent",
        "The service %v in namespace %q is inconsistent across clusters %q, which can lead to undefined behaviors. The inconsistent behaviors are: %v.",
    ),
    _m(
        "IST0171",
        "NegativeConditionStatus",
        "Warning",
        "A condition with a negative status is present",
        "A condition with a negative status is present: type=%s, reason=%s, message=%s.",
    ),
    _m(
        "IST0172",
        "FutureUnsupportedGatewayAPIVersion",
        "Warning",
        "The Gateway API CRD version will not be supported in the future",
        "The Gateway API CRD version %v is lower than the minimum version: %v",
    ),
    _m(
        "IST0173",
        "DestinationRuleSubsetNotSelectPods",
        "Error",
        "Subsets defined in destination does not select any pods.",
        "The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
    ),
    _m(
        "IST0174",
        "UnknownDestinationRuleHost",
        "Warning",
        "Host defined in destination rule does not match any services in the mesh.",
        "The host %s defined in the DestinationRule does not match any services in the mesh.",
    ),
    _m(
        "IST0175",
        "JwksUriFetchUnrestricted",
        "Warning",
        "RequestAuthentication resources exist but BLOCKED_CIDRS_IN_JWKS_URIS is not configured on istiod.",
        "BLOCKED_CIDRS_IN_JWKS_URIS is not configured but %d RequestAuthentication resource(s) exist (%s). Consider configuring it to restrict JWKS URI fetches to trusted networks.",
    ),
    _m(
        "IST0176",
        "GatewayAPICRDVersionBelowMinimum",
        "Warning",
        "A Gateway API CRD is installed at a version below the minimum required by this Istio version. Resources of this kind will not be processed.",
        "Gateway API CRD %q is at version %q but Istio requires at least %q; resources of this kind will not be processed. Upgrade the Gateway API CRDs to satisfy the minimum version.",
    ),
    _m(
        "IST0177",
        "ConflictingServiceEntryProtocol",
        "Warning",
        "Multiple ServiceEntries define the same host and port with conflicting protocols.",
        "Multiple ServiceEntries (%s) define the same host %q and port %d with conflicting protocols (%s).",
    ),
)

_BY_CODE: Final = MappingProxyType({m.code: m for m in MESSAGES})
_BY_NAME: Final = MappingProxyType({m.name: m for m in MESSAGES})


def by_code(code: str) -> Message | None:
    return _BY_CODE.get(code)


def by_name(name: str) -> Message:
    """The message called ``name`` (a KeyError for a name Istio does not have)."""
    return _BY_NAME[name]


def documentation_url(code: str) -> str:
    """Where istio.io documents ``code`` (the ``documentationUrl`` istioctl prints)."""
    return f"https://istio.io/latest/docs/reference/config/analysis/{code.lower()}/"
