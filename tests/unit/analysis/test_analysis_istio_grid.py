"""Istio's analyzer test grid, ported: the same inputs give the same messages.

Each case names Istio's input files (``tests/testdata/istio-analyzers``, copied
unchanged), the codes of the Istio analyzer the case exercises, and the
findings Istio's ``analyzers_test.go`` expects, as ``(code, "Kind ns/name")``.
Only findings with those codes are compared, so each case checks one analyzer
as Istio's grid does. Where Pilotfish refuses one of the resources at
validation (stricter than Istio), the case says so and that resource's
expected findings are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pilotfish.api.analysis.scope import CLUSTER_SCOPED_KINDS
from pilotfish.api.analyze import analyze_paths
from pilotfish.model.mesh_config import MeshConfig, parse_mesh_config

DATA = Path(__file__).resolve().parents[2] / "testdata" / "istio-analyzers"


@dataclass(frozen=True)
class Case:
    name: str
    files: tuple[str, ...]
    codes: frozenset[str]
    expected: frozenset[tuple[str, str]]
    mesh: str = ""
    #: Only findings on a field ending so (one analyzer's share of a shared code).
    field_suffix: str = ""


def case(
    name: str, files: str | tuple[str, ...], codes: str, *expected: tuple[str, str], **kw: str
) -> Case:
    names = (files,) if isinstance(files, str) else files
    return Case(name, names, frozenset(codes.split()), frozenset(expected), **kw)  # type: ignore[arg-type]


GW_PORT = "IST0162 IST0101"
CONFLICT = "IST0145"
SIDECAR = "IST0101 IST0110 IST0111"
MESH_VS = "IST0109"
TLS = "IST0128 IST0129"
SE_ADDR = "IST0134"
SE_PROTO = "IST0177"
TELEMETRY = "IST0101 IST0159 IST0160"
SUBSETS = "IST0173"
ROUTES = "IST0130 IST0131"
VS_GW = "IST0132"

CASES = [
    # Istio adds its default ingress gateway Service (ports 80, 443...) to file-only
    # analysis, so port 8004 is missing there. Pilotfish's built-in ingress gateway
    # has no Service and listens on every port a Gateway names: nothing is missing.
    case("gatewayBadPort", "gateway-no-port", GW_PORT),
    case("gatewayCorrectPort", "gateway-correct-port", GW_PORT),
    case("gatewayCustomIngressGateway", "gateway-custom-ingressgateway", GW_PORT),
    case(
        "gatewayCustomIngressGatewayBadPort",
        "gateway-custom-ingressgateway-badport",
        GW_PORT,
        ("IST0162", "Gateway httpbin-gateway"),
    ),
    case(
        "gatewayCustomIngressGatewayBadPortWithoutTarget",
        "gateway-custom-ingressgateway-badport-notarget",
        GW_PORT,
        ("IST0162", "Gateway httpbin-gateway"),
    ),
    case(
        "gatewayCustomIngressGatewayTranslation",
        "gateway-custom-ingressgateway-translation",
        GW_PORT,
    ),
    case(
        "gatewayServiceMatchPod",
        "gateway-custom-ingressgateway-svcselector",
        GW_PORT,
        ("IST0162", "Gateway httpbin8002-gateway"),
    ),
    case(
        "conflicting gateways detect",
        "conflicting-gateways",
        CONFLICT,
        ("IST0145", "Gateway alpha"),
        ("IST0145", "Gateway beta"),
    ),
    case("gateways with different port are non-conflicting", "gateway-different-port", CONFLICT),
    case(
        "conflicting gateways detect by sub selector",
        "conflicting-gateways-subSelector",
        CONFLICT,
        ("IST0145", "Gateway alpha"),
        ("IST0145", "Gateway beta"),
    ),
    case(
        "sidecarSelector",
        "sidecar-selector",
        SIDECAR,
        ("IST0101", "Sidecar default/maps-to-nonexistent"),
        ("IST0101", "Sidecar other/maps-to-different-ns"),
        ("IST0110", "Sidecar default/dupe-1"),
        ("IST0110", "Sidecar default/dupe-2"),
        ("IST0110", "Sidecar default/overlap-1"),
        ("IST0110", "Sidecar default/overlap-2"),
    ),
    case(
        "virtualServiceConflictingMeshGatewayHosts",
        "virtualservice_conflictingmeshgatewayhosts",
        MESH_VS,
        ("IST0109", "VirtualService team3/ratings"),
        ("IST0109", "VirtualService team4/ratings"),
        ("IST0109", "VirtualService foo/ratings"),
        ("IST0109", "VirtualService bar/ratings"),
        ("IST0109", "VirtualService foo/productpage"),
        ("IST0109", "VirtualService foo/bogus-productpage"),
        ("IST0109", "VirtualService team2/ratings"),
    ),
    case(
        "virtualServiceConflictingMeshGatewayHostsWithExportTo",
        "virtualservice_conflictingmeshgatewayhosts_with_exportto",
        MESH_VS,
        ("IST0109", "VirtualService foo/productpage"),
        ("IST0109", "VirtualService bar/productpage"),
        ("IST0109", "VirtualService foo/productpage-c"),
        ("IST0109", "VirtualService bar/productpage-c"),
        ("IST0109", "VirtualService foo/productpage-d"),
        ("IST0109", "VirtualService bar/productpage-d"),
    ),
    case(
        "virtualServiceDestinationRules",
        "virtualservice_destinationrules",
        "IST0101",
        ("IST0101", "VirtualService default/reviews-bogussubset"),
        ("IST0101", "VirtualService default/reviews-mirror-bogussubset"),
        field_suffix=".subset",
    ),
    case(
        "destinationrule with no cacert, simple at destinationlevel",
        "destinationrule-simple-destination",
        TLS,
        ("IST0128", "DestinationRule db-tls"),
    ),
    case(
        "destinationrule with no cacert, mutual at destinationlevel",
        "destinationrule-mutual-destination",
        TLS,
        ("IST0128", "DestinationRule db-mtls"),
    ),
    case(
        "destinationrule with no cacert, simple at portlevel",
        "destinationrule-simple-port",
        TLS,
        ("IST0129", "DestinationRule db-tls"),
    ),
    case(
        "destinationrule with credentialname, simple at destinationlevel, no workloadSelector",
        "destinationrule-simple-destination-credentialname",
        TLS,
        ("IST0128", "DestinationRule db-tls"),
    ),
    case(
        "destinationrule with credentialname, simple at destinationlevel, workloadSelector",
        "destinationrule-simple-destination-credentialname-selector",
        TLS,
    ),
    case(
        "destinationrule with credentialname, simple at portlevel, no workloadSelector",
        "destinationrule-simple-port-credentialname",
        TLS,
        ("IST0129", "DestinationRule db-tls"),
    ),
    case(
        "destinationrule with credentialname, simple at portlevel, workloadSelector",
        "destinationrule-simple-port-credentialname-selector",
        TLS,
    ),
    case(
        "destinationrule with no cacert, mutual at portlevel",
        "destinationrule-mutual-port",
        TLS,
        ("IST0129", "DestinationRule db-mtls"),
    ),
    case(
        "destinationrule with no cacert, mutual at destinationlevel and simple at port level",
        "destinationrule-compound-simple-mutual",
        TLS,
        ("IST0128", "DestinationRule db-mtls"),
        ("IST0129", "DestinationRule db-mtls"),
    ),
    case(
        "destinationrule with no cacert, simple at destinationlevel and mutual at port level",
        "destinationrule-compound-mutual-simple",
        TLS,
        ("IST0128", "DestinationRule db-mtls"),
        ("IST0129", "DestinationRule db-mtls"),
    ),
    case("destinationrule with both cacerts", "destinationrule-with-ca", TLS),
    case(
        "missing Addresses and Protocol in Service Entry",
        "serviceentry-missing-addresses-protocol",
        SE_ADDR,
        ("IST0134", "ServiceEntry default/service-entry-test-03"),
        ("IST0134", "ServiceEntry default/service-entry-test-04"),
        ("IST0134", "ServiceEntry default/service-entry-test-07"),
    ),
    case(
        "missing Addresses and Protocol in Service Entry with ISTIO_META_DNS_AUTO_ALLOCATE enabled",
        "serviceentry-missing-addresses-protocol",
        SE_ADDR,
        mesh="serviceentry-missing-addresses-protocol-mesh-cfg",
    ),
    case(
        "ServiceEntry Addresses Required Lowercase Protocol",
        "serviceentry-address-required-lowercase",
        SE_ADDR,
        ("IST0134", "ServiceEntry address-missing-lowercase"),
    ),
    case(
        "ServiceEntry Addresses Required Uppercase Protocol",
        "serviceentry-address-required-uppercase",
        SE_ADDR,
        ("IST0134", "ServiceEntry address-missing-uppercase"),
    ),
    case(
        "ServiceEntry conflicting protocols on same host and port",
        "serviceentry-conflicting-protocol",
        SE_PROTO,
        ("IST0177", "ServiceEntry default/se-http"),
        ("IST0177", "ServiceEntry default/se-https"),
    ),
    case("ServiceEntry no conflict same protocol", "serviceentry-no-conflict-protocol", SE_PROTO),
    case(
        "ServiceEntry no conflict non-overlapping exportTo scopes",
        "serviceentry-conflicting-exportto",
        SE_PROTO,
    ),
    case(
        "certificate duplication in Gateway",
        "gateway-duplicate-certificate",
        "IST0138",
        ("IST0138", "Gateway istio-system/gateway-01-test-01"),
        ("IST0138", "Gateway istio-system/gateway-02-test-01"),
        ("IST0138", "Gateway istio-system/gateway-01-test-02"),
        ("IST0138", "Gateway default/gateway-01-test-03"),
    ),
    case(
        "telemetrySelector",
        "telemetry-selector",
        TELEMETRY,
        ("IST0101", "Telemetry default/maps-to-nonexistent"),
        ("IST0101", "Telemetry other/maps-to-different-ns"),
        ("IST0159", "Telemetry default/dupe-1"),
        ("IST0159", "Telemetry default/dupe-2"),
        ("IST0159", "Telemetry default/overlap-1"),
        ("IST0159", "Telemetry default/overlap-2"),
    ),
    case(
        "telemetryDefaultSelector",
        "telemetry-default-selector",
        TELEMETRY,
        ("IST0160", "Telemetry ns2/has-conflict-2"),
        ("IST0160", "Telemetry ns2/has-conflict-1"),
    ),
    # The files declare no pod at all. Istio reports the subset; Pilotfish reports
    # IST0173 only for a Service some declared pod backs (offline, pods absent from
    # the files are unknown, not missing), and says the Service selects nothing.
    case("DestinationRuleSubsetsNotSelectPods", "destinationrule-subsets-not-select-pods", SUBSETS),
    case(
        "dupmatches",
        ("virtualservice_dupmatches", "virtualservice_overlappingmatches"),
        ROUTES,
        ("IST0130", "VirtualService duplicate-match"),
        ("IST0130", "VirtualService foo/sample-foo-cluster01"),
        ("IST0131", "VirtualService almost-duplicate-match"),
        ("IST0131", "VirtualService duplicate-match"),
        ("IST0130", "VirtualService duplicate-tcp-match"),
        ("IST0130", "VirtualService duplicate-empty-tcp"),
        ("IST0131", "VirtualService almost-duplicate-tcp-match"),
        ("IST0131", "VirtualService duplicate-tcp-match"),
        ("IST0130", "VirtualService none/tls-routing"),
        ("IST0131", "VirtualService none/tls-routing-almostmatch"),
        ("IST0131", "VirtualService none/tls-routing"),
        ("IST0131", "VirtualService non-method-get"),
        ("IST0131", "VirtualService overlapping-in-single-match"),
        ("IST0131", "VirtualService overlapping-in-two-matches"),
        ("IST0131", "VirtualService overlapping-mathes-with-different-methods"),
    ),
    case(
        "host defined in virtualservice not found in the gateway",
        "virtualservice_host_not_found_gateway",
        VS_GW,
        ("IST0132", "VirtualService default/testing-service-02-test-01"),
        ("IST0132", "VirtualService default/testing-service-02-test-02"),
        ("IST0132", "VirtualService default/testing-service-02-test-03"),
        ("IST0132", "VirtualService default/testing-service-03-test-04"),
    ),
    # WasmPlugin is not an accepted kind (its wasmplugin-ineffective is left out), and
    # Pilotfish refuses telemetry-effective, which sets both selector and targetRef.
    case(
        "KubernetesGatewaySelector",
        "k8sgateway-selector",
        "IST0166",
        ("IST0166", "RequestAuthentication default/ra-ineffective"),
        ("IST0166", "AuthorizationPolicy default/ap-ineffective"),
        ("IST0166", "Telemetry default/telemetry-ineffective"),
    ),
    # Pilotfish refuses ServiceEntry httpbin/istio (a short host with DNS resolution and
    # no endpoints), which no expected finding is about. test-ambient/no-workload is
    # reported as in Istio (Pilotfish has no ambient mode: the namespace has no pod).
    case(
        "authorizationpolicies",
        "authorizationpolicies",
        "IST0127",
        ("IST0127", "AuthorizationPolicy istio-system/meshwide-httpbin-v1"),
        ("IST0127", "AuthorizationPolicy httpbin-empty/httpbin-empty-namespace-wide"),
        ("IST0127", "AuthorizationPolicy httpbin/httpbin-nopods"),
        ("IST0127", "AuthorizationPolicy test-ambient/no-workload"),
    ),
    # Pilotfish refuses the two Sidecars of ns-ambient (no egress, ingress or
    # outboundTrafficPolicy), on which Istio reports IneffectivePolicy (ambient mode).
    case(
        "sidecarDefaultSelector",
        "sidecar-default-selector",
        "IST0111",
        ("IST0111", "Sidecar ns2/has-conflict-2"),
        ("IST0111", "Sidecar ns2/has-conflict-1"),
    ),
    # PodMissingProxy (IST0103) is not applicable: Pilotfish's runtime always adds the sidecar.
    case(
        "istioInjection",
        "injection",
        "IST0102 IST0123",
        ("IST0102", "Namespace bar"),
        ("IST0123", "Namespace busted"),
        ("IST0123", "Namespace multi-ns-1"),
        ("IST0123", "Namespace multi-ns-2"),
        ("IST0123", "Namespace multi-ns-3"),
    ),
    # Pilotfish refuses my-namespace1/my-service1, as Kubernetes does: a Service with
    # several ports must name them all.
    case(
        "portNameNotFollowConvention",
        "service-no-port-name",
        "IST0118",
        ("IST0118", "Service my-namespace2/my-service2"),
    ),
    case("namedPort", "service-port-name", "IST0118"),
    case("unnamedPortInSystemNamespace", "service-no-port-name-system-namespace", "IST0118"),
    # Every expected finding of this case rests on Services with ports of protocol
    # HTTP, which Kubernetes and Pilotfish refuse (TCP, UDP or SCTP only): those
    # Services do not load, so nothing is found. test_analysis_analyzers covers
    # IST0116 and IST0137 with valid Services.
    case("serviceMultipleDeployments", "deployment-multi-service", "IST0116 IST0137"),
    case(
        "deploymentMultiServicesInDifferentNamespace",
        "deployment-multi-service-different-ns",
        "IST0116 IST0137",
    ),
    case("serviceWithNoSelector", "deployment-service-no-selector", "IST0116 IST0137"),
    case(
        "Application Pod SecurityContext with UID 1337",
        "pod-sec-uid",
        "IST0144",
        ("IST0144", "Pod pod-sec-uid"),
    ),
    case(
        "Application Container SecurityContext with UID 1337",
        "pod-con-sec-uid",
        "IST0144",
        ("IST0144", "Pod con-sec-uid"),
    ),
    case(
        "Deployment Pod SecurityContext with UID 1337",
        "deployment-pod-sec-uid",
        "IST0144",
        ("IST0144", "Deployment deploy-pod-sec-uid"),
    ),
    case(
        "Deployment Container SecurityContext with UID 1337",
        "deployment-con-sec-uid",
        "IST0144",
        ("IST0144", "Deployment deploy-con-sec-uid"),
    ),
    case(
        "ExternalNameServiceTypeInvalidPortName",
        "incorrect-port-name-external-name-service-type",
        "IST0150 IST0118",
        ("IST0150", "Service nginx-ns/nginx"),
        ("IST0150", "Service nginx-ns2/nginx-svc2"),
        ("IST0150", "Service nginx-ns3/nginx-svc3"),
    ),
    case(
        "ExternalNameServiceTypeValidPortName",
        "correct-port-name-external-name-service-type",
        "IST0150 IST0118",
    ),
    case(
        "Analyze invalid telemetry",
        "telemetry-invalid-provider",
        "IST0157",
        ("IST0157", "Telemetry istio-system/mesh-default"),
    ),
    case("Analyze disabled telemetry", "telemetry-disable-provider", "IST0157"),
    # Pilotfish refuses Service ratings (port protocol HTTP); the finding is on routes.
    case(
        "virtualServiceRouteRuleNoEffectsIngress",
        "virtualservice_route_rule_no_effects_ingress",
        "IST0140",
        ("IST0140", "VirtualService default/testing-service-01-test-01"),
    ),
    case(
        "virtualServiceJWTClaimRoute",
        "virtualservice_jwtclaimroute",
        "IST0149",
        ("IST0149", "VirtualService foo"),
    ),
    # Istio's K8sAnalyzer; Pilotfish refuses the Ingress "gateway" (extensions/v1beta1
    # backend fields), on which Istio's analyzer does not look anyway.
    case(
        "misannoted",
        "misannotated",
        "IST0107 IST0108 IST0125 IST0135",
        ("IST0108", "Service httpbin"),
        ("IST0125", "Pod invalid-annotations"),
        ("IST0107", "Pod grafana-test"),
        ("IST0107", "Deployment fortio-deploy"),
        ("IST0107", "Namespace staging"),
        ("IST0135", "Deployment fortio-deploy"),
    ),
    # Istio's AlphaAnalyzer (run on request by istioctl, by default by Pilotfish).
    # Istio expects one finding per annotation; the grid compares the set.
    case(
        "alpha",
        "misannotated",
        "IST0136",
        ("IST0136", "Deployment fortio-deploy"),
        ("IST0136", "Pod invalid-annotations"),
        ("IST0136", "Service httpbin"),
        ("IST0136", "Pod anno-not-set-by-default"),
    ),
    # Pilotfish refuses VirtualService foo/productpage (an HTTP route without route,
    # and a delay without fixedDelay), Istio's finding on it is left out; EnvoyFilter
    # and QuotaSpec are not accepted kinds.
    case(
        "deprecation",
        "deprecation",
        "IST0002",
        ("IST0002", "Sidecar default/no-selector"),
    ),
    # Pilotfish refuses the three kubernetes.io/tls Secrets when they load (missing
    # keys, a bad key, a key not matching its certificate): their Gateways get
    # IST0101 (no such Secret) instead. The Opaque Secret with keys cert and key
    # loads, and cannot serve TLS.
    case(
        "gatewaySecretValidations",
        "gateway-secrets-validation",
        "IST0161",
        ("IST0161", "Gateway defaultgateway-invalid-keys"),
    ),
    # Pilotfish refuses Istio's internal gateway name at validation (error, with the
    # same advice); test_analysis_messages covers IST0165 on Pilotfish's own names.
    case("virtualServiceInternalGatewayRef", "virtualservice_internal_gateway_ref", "IST0165"),
    # Pilotfish refuses the Service (no port) and the ServiceEntry (no host, and an
    # upper-case name): their findings are left out.
    case(
        "Condition Analyzer",
        "condition-analyzer",
        "IST0171",
        ("IST0171", "AuthorizationPolicy default/negative-condition-authz"),
        ("IST0171", "KubernetesGateway default/negative-condition-gateway"),
        ("IST0171", "HTTPRoute default/negative-condition-httproute"),
        ("IST0171", "GRPCRoute default/negative-condition-grpcroute"),
        ("IST0171", "AuthorizationPolicy default/negative-condition-authz-partially-invalid"),
    ),
    case(
        "host defined in virtualservice not found in the gateway with ns",
        "virtualservice_host_not_found_gateway_with_ns_prefix",
        VS_GW,
        ("IST0132", "VirtualService default/testing-service-01-test-01"),
    ),
]


def _origin(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _normal(origin: str) -> str:
    """Istio's grid names objects of files without a namespace by name alone."""
    kind, _, who = origin.partition(" ")
    if "/" in who or kind in CLUSTER_SCOPED_KINDS:
        return origin
    return f"{kind} default/{who}"


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.name)
def test_same_inputs_same_messages(c: Case) -> None:
    mesh: MeshConfig | None = None
    if c.mesh:
        mesh = parse_mesh_config((DATA / f"{c.mesh}.yaml").read_text(), c.mesh)
    found = analyze_paths([str(DATA / f"{f}.yaml") for f in c.files], mesh=mesh)
    actual = {
        (d.code, _origin(d.kind, d.namespace, d.name))
        for d in found
        if d.code in c.codes and d.field.endswith(c.field_suffix)
    }
    assert actual == {(code, _normal(o)) for code, o in c.expected}
