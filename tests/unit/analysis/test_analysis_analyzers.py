"""Raising cases and near misses of Pilotfish's analyzers beyond Istio's own grid."""

from __future__ import annotations

import textwrap

from pilotfish.api.analyze import analyze_loaded
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.loader import load_text


def analyze(text: str) -> list[Diagnostic]:
    loaded = load_text(textwrap.dedent(text).lstrip("\n"), "test.yaml")
    assert [d.format() for d in loaded.diagnostics if d.is_error] == []
    return analyze_loaded(loaded.resources)


def codes(found: list[Diagnostic], code: str) -> list[tuple[str, str, str]]:
    return [
        (f"{d.kind} {d.namespace}/{d.name}", d.field, d.message) for d in found if d.code == code
    ]


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: shop, namespace: default}}
spec:
  selector: {selector}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: ["*"]
    tls: {{mode: SIMPLE, credentialName: shop-cert}}
"""
SECRET = """
---
apiVersion: v1
kind: Secret
metadata: {{name: shop-cert, namespace: {ns}}}
type: Opaque
data: {{token: c2VjcmV0}}
"""


def test_credential_is_looked_up_beside_the_builtin_ingress_workload() -> None:
    gw = GATEWAY.format(selector="{istio: ingressgateway}")
    assert codes(analyze(gw + SECRET.format(ns="istio-system")), "IST0101") == []
    # The near miss: the Secret beside the Gateway resource, not beside its workload.
    assert codes(analyze(gw + SECRET.format(ns="default")), "IST0101") == [
        (
            "Gateway default/shop",
            "spec.servers[0].tls.credentialName",
            "Secret istio-system/shop-cert does not exist",
        )
    ]


def test_credential_is_looked_up_beside_a_declared_gateway_workload() -> None:
    pod = """
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: edge, namespace: edge, labels: {app: edge}}
    spec: {containers: [{name: proxy, image: envoy}]}
    """
    gw = GATEWAY.format(selector="{app: edge}") + textwrap.dedent(pod)
    assert codes(analyze(gw + SECRET.format(ns="edge")), "IST0101") == []
    found = codes(analyze(gw + SECRET.format(ns="default")), "IST0101")
    assert [m for _, _, m in found] == ["Secret edge/shop-cert does not exist"]


def test_gateway_port_needs_a_service_only_when_one_selects_the_workload() -> None:
    gw = GATEWAY.format(selector="{istio: ingressgateway}")
    # The built-in ingress gateway has no Service: any port is served.
    assert codes(analyze(gw), "IST0162") == []
    service = """
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: istio-ingressgateway, namespace: istio-system}
    spec:
      selector: {istio: ingressgateway}
      ports: [{name: http, port: 80, targetPort: 8080}]
    """
    found = codes(analyze(gw + textwrap.dedent(service)), "IST0162")
    assert [(o, f) for o, f, _ in found] == [
        ("Gateway default/shop", "spec.servers[0].port.number")
    ]
    with_443 = textwrap.dedent(service).replace(
        "targetPort: 8080}]", "targetPort: 8080}, {name: https, port: 443}]"
    )
    assert codes(analyze(gw + with_443), "IST0162") == []


def test_unreachable_rule_after_a_catch_all() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: web, namespace: default}
    spec:
      hosts: [web]
      http:
      - route: [{destination: {host: web}}]
      - match: [{uri: {prefix: /api}}]
        route: [{destination: {host: web}}]
    """
    found = codes(analyze(vs), "IST0130")
    assert found == [
        (
            "VirtualService default/web",
            "spec.http[1]",
            "rule #1 is never used (route without matches defined before)",
        )
    ]
    # The near miss: the catch-all last.
    reordered = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: web, namespace: default}
    spec:
      hosts: [web]
      http:
      - match: [{uri: {prefix: /api}}]
        route: [{destination: {host: web}}]
      - route: [{destination: {host: web}}]
    """
    assert codes(analyze(reordered), "IST0130") == []


def test_policy_selectors_say_nothing_without_declared_pods() -> None:
    policy = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: ap, namespace: shop}
    spec:
      selector: {matchLabels: {app: cart}}
    """
    # Offline, no pod in the files means the pods are unknown, not missing.
    assert codes(analyze(policy), "IST0127") == []
    pod = """
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: web, namespace: shop, labels: {app: web}}
    spec: {containers: [{name: web, image: web}]}
    """
    assert [f for _, f, _ in codes(analyze(policy + pod), "IST0127")] == [
        "spec.selector.matchLabels"
    ]
    assert codes(analyze(policy + pod.replace("app: web", "app: cart")), "IST0127") == []


def test_ineffective_selector_only_without_target_ref() -> None:
    pod = """
    apiVersion: v1
    kind: Pod
    metadata:
      name: gw
      namespace: default
      labels: {gateway.networking.k8s.io/gateway-name: edge}
    spec: {containers: [{name: istio-proxy, image: proxy}]}
    ---
    """
    ra = """
    apiVersion: security.istio.io/v1
    kind: RequestAuthentication
    metadata: {name: ra, namespace: default}
    spec:
      selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: edge}}
      jwtRules: [{issuer: example}]
    """
    found = codes(analyze(pod + ra), "IST0166")
    assert [o for o, _, _ in found] == ["RequestAuthentication default/ra"]
    by_target = ra.replace(
        "selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: edge}}",
        "targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: edge}",
    )
    assert codes(analyze(pod + by_target), "IST0166") == []


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web}]}
"""


def _service(name: str, ports: str) -> str:
    return f"""
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: {ports}
"""


def test_services_of_a_deployment_disagree_on_protocol_or_port() -> None:
    tcp = _service("web-tcp", "[{name: dns-tcp, port: 53, protocol: TCP}]")
    udp = _service("web-udp", "[{name: dns-udp, port: 53, protocol: UDP}]")
    found = analyze(textwrap.dedent(DEPLOYMENT) + tcp + udp)
    assert [(o, m) for o, _, m in codes(found, "IST0116")] == [
        (
            "Deployment shop/web",
            "Services shop/web-tcp, shop/web-udp select these pods and give port 53 different "
            "protocols (TCP, UDP)",
        )
    ]
    # The near miss: the same protocol twice.
    assert (
        codes(analyze(textwrap.dedent(DEPLOYMENT) + tcp + tcp.replace("web-tcp", "b")), "IST0116")
        == []
    )
    a = _service("a", "[{name: http, port: 80, targetPort: 8080}]")
    b = _service("b", "[{name: http, port: 8000, targetPort: 8080}]")
    found = analyze(textwrap.dedent(DEPLOYMENT) + a + b)
    assert [m for _, _, m in codes(found, "IST0137")] == [
        "Services shop/a, shop/b select these pods and send targetPort 8080 from different "
        "ports (80, 8000)"
    ]
    same_port = _service("b", "[{name: http, port: 80, targetPort: 8080}]")
    assert codes(analyze(textwrap.dedent(DEPLOYMENT) + a + same_port), "IST0137") == []


def test_destination_port_required_for_a_service_with_several_ports() -> None:
    text = """
    apiVersion: v1
    kind: Service
    metadata: {name: api, namespace: default}
    spec:
      selector: {app: api}
      ports: [{name: http, port: 80}, {name: grpc, port: 9090}]
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: api, namespace: default}
    spec:
      hosts: [api]
      http:
      - route: [{destination: {host: api}}]
    """
    found = codes(analyze(text), "IST0112")
    assert found == [
        (
            "VirtualService default/api",
            "spec.http[0].route[0].destination.host",
            "api has several ports (80, 9090): give destination.port",
        )
    ]
    with_port = text.replace(
        "{destination: {host: api}}", "{destination: {host: api, port: {number: 80}}}"
    )
    assert codes(analyze(with_port), "IST0112") == []
