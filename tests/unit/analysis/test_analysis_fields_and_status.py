"""IST0002 Deprecated, IST0161 InvalidGatewayCredential, IST0165
ReferencedInternalGateway and IST0171 NegativeConditionStatus: a case that
must raise each, and a near miss that must not."""

from __future__ import annotations

import base64
import datetime
import json
import textwrap

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilotfish.api.analyze import analyze_loaded
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.loader import load_text
from pki import TestCa


def analyze(text: str) -> list[Diagnostic]:
    loaded = load_text(textwrap.dedent(text).lstrip("\n"), "test.yaml")
    assert [d.format() for d in loaded.diagnostics if d.is_error] == []
    return analyze_loaded(loaded.resources)


def found(diags: list[Diagnostic], code: str) -> list[tuple[str, str, int]]:
    return [
        (f"{d.kind} {d.namespace}/{d.name}", d.field, d.source.line if d.source else 0)
        for d in diags
        if d.code == code
    ]


# IST0002 ---------------------------------------------------------------------

VS_FAULT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ratings, namespace: default}}
spec:
  hosts: [ratings]
  http:
  - fault:
      delay:
        fixedDelay: 1s
        {percent}
    route:
    - destination: {{host: ratings}}
"""


def test_deprecated_delay_percent_raises_ist0002_at_its_line() -> None:
    diags = analyze(VS_FAULT.format(percent="percent: 50"))
    assert found(diags, "IST0002") == [
        ("VirtualService default/ratings", "spec.http[0].fault.delay.percent", 10)
    ]
    assert "percentage" in next(d.message for d in diags if d.code == "IST0002")
    # The near miss: the field that replaces it.
    assert found(analyze(VS_FAULT.format(percent="percentage: {value: 50}")), "IST0002") == []


def test_sidecar_egress_proxy_raises_ist0002() -> None:
    sidecar = """
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {{name: default, namespace: default}}
    spec:
      egress: [{{hosts: ["./*"]}}]
      outboundTrafficPolicy:
        mode: ALLOW_ANY
        {extra}
    """
    egress = "egressProxy: {host: example, port: {number: 9080}}"
    diags = analyze(sidecar.format(extra=egress))
    assert [f for _, f, _ in found(diags, "IST0002")] == ["spec.outboundTrafficPolicy.egressProxy"]
    assert found(analyze(sidecar.format(extra="")), "IST0002") == []


# IST0161 ---------------------------------------------------------------------

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: shop-cert}
"""


def _opaque(data: dict[str, str]) -> str:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-cert", "namespace": "istio-system"},
        "type": "Opaque",
        "data": encoded,
    }
    return "---\n" + json.dumps(doc) + "\n"


def _expired() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def _ist0161(secret: str) -> list[str]:
    diags = analyze(GATEWAY + secret)
    assert found(diags, "IST0101") == []  # the Secret exists
    return [d.message for d in diags if d.code == "IST0161"]


def test_unusable_gateway_credentials_raise_ist0161() -> None:
    leaf, other = TestCa().issue("shop"), TestCa().issue("other")
    cert, key = _expired()
    cases = {
        "holds neither": {"token": "secret"},
        "'cert' is not a PEM certificate": {"cert": "hush", "key": "secret"},
        "expired at": {"cert": cert, "key": key},
        "'key' does not match": {"cert": leaf.cert_pem, "key": other.key_pem},
    }
    for reason, data in cases.items():
        messages = _ist0161(_opaque(data))
        assert len(messages) == 1 and reason in messages[0], (reason, messages)
        assert messages[0].startswith("Secret istio-system/shop-cert cannot serve TLS")
    diags = analyze(GATEWAY + _opaque({"token": "secret"}))
    assert found(diags, "IST0161") == [
        ("Gateway default/shop", "spec.servers[0].tls.credentialName", 9)
    ]


def test_usable_generic_credential_does_not_raise_ist0161() -> None:
    leaf = TestCa().issue("shop")
    assert _ist0161(_opaque({"cert": leaf.cert_pem, "key": leaf.key_pem})) == []


# IST0165 ---------------------------------------------------------------------

K8S_GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: web, port: 80, protocol: HTTP}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: mine, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: ["*"]
  gateways: [GATEWAY]
  http:
  - route:
    - destination: {host: web}
"""


def test_virtual_service_bound_to_a_generated_gateway_raises_ist0165() -> None:
    diags = analyze(K8S_GATEWAY.replace("GATEWAY", "default/edge-web-gwapi"))
    assert found(diags, "IST0165") == [("VirtualService default/web", "spec.gateways[0]", 30)]
    message = next(d.message for d in diags if d.code == "IST0165")
    assert "KubernetesGateway default/edge" in message
    # The generated Gateway exists: no IST0101 beside it.
    assert [f for f in found(diags, "IST0101") if f[1] == "spec.gateways[0]"] == []


def test_virtual_service_bound_to_its_own_gateway_does_not_raise_ist0165() -> None:
    assert found(analyze(K8S_GATEWAY.replace("GATEWAY", "mine")), "IST0165") == []


def test_virtual_service_bound_to_an_ingress_gateway_raises_ist0165() -> None:
    ingress = """
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata:
      name: shop
      namespace: default
      annotations: {kubernetes.io/ingress.class: istio}
    spec:
      rules:
      - host: shop.example.com
        http:
          paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
    ---
    """
    text = textwrap.dedent(ingress) + K8S_GATEWAY.replace(
        "GATEWAY", "istio-system/shop-istio-autogenerated-k8s-ingress-default"
    )
    diags = analyze(text)
    assert [m.message for m in diags if m.code == "IST0165"] == [
        "gateway istio-system/shop-istio-autogenerated-k8s-ingress-default is generated by "
        "Pilotfish from Ingress default/shop and changes or goes with it; route through that "
        "resource, or bind to a Gateway of your own"
    ]
    # The Ingress's own kubernetes.io/ingress.class is in place (no IST0107).
    assert found(diags, "IST0107") == []


def test_istios_internal_gateway_name_is_refused_with_advice() -> None:
    text = K8S_GATEWAY.replace("GATEWAY", "default/edge~istio-autogenerated-k8s-gateway~web")
    loaded = load_text(text, "test.yaml")
    errors = [d for d in loaded.diagnostics if d.is_error]
    assert [d.field for d in errors] == ["spec.gateways[0]"]
    assert "IST0165" in errors[0].message and "HTTPRoute" in errors[0].message


# IST0171 ---------------------------------------------------------------------

ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: edge}}]
status:
  parents:
  - parentRef: {{name: edge}}
    controllerName: istio.io/gateway-controller
    conditions:
    - {{type: ResolvedRefs, status: "True", reason: ResolvedRefs}}
    - {{type: Accepted, status: "{accepted}", reason: NotAllowedByListeners, message: nope}}
    - {{type: argocd.argoproj.io/Synced, status: "False", reason: OutOfSync}}
"""


def test_negative_condition_in_a_written_status_raises_ist0171() -> None:
    diags = analyze(ROUTE.format(accepted="False"))
    assert found(diags, "IST0171") == [
        ("HTTPRoute default/web", "status.parents[0].conditions[1]", 12)
    ]
    message = next(d.message for d in diags if d.code == "IST0171")
    assert "Accepted is False" in message and "NotAllowedByListeners" in message


def test_positive_and_foreign_conditions_do_not_raise_ist0171() -> None:
    # Accepted True; Argo's Synced False is not a condition Istio judges.
    assert found(analyze(ROUTE.format(accepted="True")), "IST0171") == []


def test_service_waypoint_condition_raises_ist0171_only_when_false() -> None:
    service = """
    apiVersion: v1
    kind: Service
    metadata: {{name: web, namespace: default}}
    spec:
      selector: {{app: web}}
      ports: [{{name: http, port: 80}}]
    status:
      conditions:
      - {{type: istio.io/WaypointBound, status: "{bound}", reason: NoWaypoint}}
    """
    diags = analyze(service.format(bound="False"))
    assert found(diags, "IST0171") == [("Service default/web", "status.conditions[0]", 9)]
    assert found(analyze(service.format(bound="True")), "IST0171") == []
