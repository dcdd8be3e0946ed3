"""credentialName certificates travel over SDS: listeners and clusters only name them.

Translation checks the Secret and refers to ``kubernetes://<ns>/<name>``;
``MeshGenerator`` puts the contents in the view's SDS set; a rotated Secret
changes that set and nothing else.
"""

from __future__ import annotations

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.gateway import gateway_listeners
from pilotfish.xds.types import CLUSTER_TYPE, LISTENER_TYPE, SECRET_TYPE
from pki import Leaf, TestCa, tls_secret

GATEWAY_VIEW = ProxyView("gateway", "istio-system", labels=(("istio", "ingressgateway"),))
SIDECAR_VIEW = ProxyView("sidecar", "default", labels=(("app", "web"),), bind_ip="127.0.0.5")

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.test]
    tls: {mode: SIMPLE, credentialName: CREDENTIAL}
  - port: {number: 8443, name: https-mutual, protocol: HTTPS}
    hosts: [a.example.test]
    tls: {mode: MUTUAL, credentialName: mtls-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a.example.test]
  gateways: [gw]
  http: [{route: [{destination: {host: web}}]}]
---
"""


def snapshot(
    leaf: Leaf, ca: TestCa, credential: str = "gw-cert", previous: Snapshot | None = None
) -> Snapshot:
    text = (
        CONFIG.replace("CREDENTIAL", credential)
        + tls_secret("gw-cert", "istio-system", leaf)
        + "---\n"
        + tls_secret("mtls-cert", "istio-system", leaf, ca.ca_pem)
        # A namesake in another namespace must never be used for the gateway.
        + "---\n"
        + tls_secret("gw-cert", "default", leaf)
    )
    result = load_text(text, "test.yaml")
    assert not [d for d in result.diagnostics if d.is_error], result.diagnostics
    revision = 1 if previous is None else previous.revision + 1
    return build_snapshot(result.resources, revision, previous=previous)


def _tls_by_port(snap: Snapshot) -> dict[int, ir.DownstreamTls | None]:
    parts = gateway_listeners(snap, GATEWAY_VIEW)
    return {lst.port: lst.filter_chains[0].tls for lst in parts.listeners}


def _secrets(rs: object) -> dict[str, secret_pb2.Secret]:
    out = {}
    for name, data in rs.resources.items():  # type: ignore[attr-defined]
        secret = secret_pb2.Secret()
        any_pb2.Any.FromString(data).Unpack(secret)
        out[name] = secret
    return out


def test_gateway_tls_names_sds_resources_of_its_own_namespace() -> None:
    ca = TestCa()
    tls = _tls_by_port(snapshot(ca.issue("a"), ca))
    simple, mutual = tls[443], tls[8443]
    assert simple is not None and mutual is not None
    assert simple.server_cert == ir.CertSource(credential="kubernetes://istio-system/gw-cert")
    assert simple.trusted_ca is None
    assert mutual.server_cert == ir.CertSource(credential="kubernetes://istio-system/mtls-cert")
    assert mutual.trusted_ca == ir.CertSource(
        credential="kubernetes://istio-system/mtls-cert-cacert"
    )


def test_explicit_namespace_form_is_accepted_for_its_own_namespace_only() -> None:
    ca = TestCa()
    leaf = ca.issue("a")
    own = _tls_by_port(snapshot(leaf, ca, credential="istio-system/gw-cert"))
    assert own[443] is not None
    assert own[443].server_cert.credential == "kubernetes://istio-system/gw-cert"
    # A Secret of another namespace is refused: the server is not served at all.
    other = _tls_by_port(snapshot(leaf, ca, credential="default/gw-cert"))
    assert 443 not in other and 8443 in other


def test_generator_serves_contents_only_in_the_secret_set() -> None:
    ca = TestCa()
    leaf = ca.issue("a")
    gen = MeshGenerator()
    gen.set_snapshot(snapshot(leaf, ca))
    sets = gen.generate(GATEWAY_VIEW)
    for url in (LISTENER_TYPE, CLUSTER_TYPE):
        for data in sets[url].resources.values():
            assert b"PRIVATE KEY" not in data and leaf.key_pem.encode() not in data
    secrets = _secrets(sets[SECRET_TYPE])
    assert set(secrets) == {
        "kubernetes://istio-system/gw-cert",
        "kubernetes://istio-system/mtls-cert",
        "kubernetes://istio-system/mtls-cert-cacert",
    }
    cert = secrets["kubernetes://istio-system/gw-cert"].tls_certificate
    assert cert.private_key.inline_bytes == leaf.key_pem.encode()
    assert cert.certificate_chain.inline_bytes == leaf.cert_pem.encode()
    ca_secret = secrets["kubernetes://istio-system/mtls-cert-cacert"]
    assert ca_secret.validation_context.trusted_ca.inline_bytes == ca.ca_pem.encode()
    # A sidecar that names no credential gets an empty secret set.
    assert not gen.generate(SIDECAR_VIEW)[SECRET_TYPE].resources


def test_rotation_changes_only_the_secret_set() -> None:
    ca = TestCa()
    gen = MeshGenerator()
    first = snapshot(ca.issue("a"), ca)
    gen.set_snapshot(first)
    before = gen.generate(GATEWAY_VIEW)
    rotated = ca.issue("a")
    gen.set_snapshot(snapshot(rotated, ca, previous=first))
    after = gen.generate(GATEWAY_VIEW)
    assert before[LISTENER_TYPE].version == after[LISTENER_TYPE].version
    assert before[CLUSTER_TYPE].version == after[CLUSTER_TYPE].version
    assert before[SECRET_TYPE].version != after[SECRET_TYPE].version
    served = _secrets(after[SECRET_TYPE])["kubernetes://istio-system/gw-cert"]
    assert served.tls_certificate.certificate_chain.inline_bytes == rotated.cert_pem.encode()


def test_destination_rule_credential_reaches_the_cluster_as_sds() -> None:
    ca = TestCa()
    leaf = ca.issue("client")
    text = (
        CONFIG.replace("CREDENTIAL", "gw-cert")
        + tls_secret("upstream", "default", leaf, ca.ca_pem)
        + """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  trafficPolicy: {tls: {mode: MUTUAL, credentialName: upstream}}
"""
    )
    result = load_text(text, "test.yaml")
    gen = MeshGenerator()
    gen.set_snapshot(build_snapshot(result.resources, 1))
    sets = gen.generate(SIDECAR_VIEW)
    for data in sets[CLUSTER_TYPE].resources.values():
        assert b"PRIVATE KEY" not in data
    assert set(sets[SECRET_TYPE].resources) == {
        "kubernetes://default/upstream",
        "kubernetes://default/upstream-cacert",
    }
