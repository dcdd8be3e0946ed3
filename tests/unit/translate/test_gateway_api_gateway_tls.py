"""A Gateway's ``spec.tls``: client-certificate validation of HTTPS listeners and the
client certificate it presents to TLS backends (conversion and status)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from translate_cases import load_snapshot

from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.loader import load_text
from pilotfish.api.networking.gateway import GatewaySpec as IstioGatewaySpec
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.ir import CertSource
from pilotfish.model.proxy_view import ProxyView
from pilotfish.translate.compose import compose
from pilotfish.translate.conversion import Conversion, ConversionContext
from pilotfish.translate.gateway_api import convert_gateway_api
from pilotfish.translate.gateway_markers import (
    ACCEPT_UNTRUSTED_ANNOTATION,
    BACKEND_CLIENT_CERT_ANNOTATION,
)
from pki import TestCa, tls_secret

CA = TestCa()
CLIENT_CA = TestCa("client CA")
SERVER = CA.issue("server", ("*.example.org",))
CLIENT = CLIENT_CA.issue("client")

BASE = "\n---\n".join(
    [
        tls_secret("server-cert", "infra", SERVER),
        tls_secret("client-cert", "infra", CLIENT),
        tls_secret("shared-client-cert", "other", CLIENT),
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "client-ca", "namespace": "infra"},
                "data": {"ca.crt": CLIENT_CA.ca_pem},
            }
        ),
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "other-ca", "namespace": "other"},
                "data": {"ca.crt": CA.ca_pem},
            }
        ),
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "malformed", "namespace": "infra"},
                "data": {},
            }
        ),
        """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: infra}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
""",
    ]
)


def _listener(name: str, port: int, protocol: str = "HTTPS") -> str:
    tls = "\n    tls: {certificateRefs: [{name: server-cert}]}" if protocol == "HTTPS" else ""
    return f"""
  - name: {name}
    port: {port}
    protocol: {protocol}{tls}"""


def _gateway(tls: str, *listeners: str) -> str:
    body = "".join(listeners) or _listener("https", 443)
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: istio
  tls: {tls}
  listeners:{body}
"""


def _validation(*refs: str, mode: str = "") -> str:
    mode_part = f", mode: {mode}" if mode else ""
    return f"{{caCertificateRefs: [{', '.join(refs)}]{mode_part}}}"


CM = '{group: "", kind: ConfigMap, name: client-ca}'
_INVALID_CLIENT = "InvalidClientCertificateRef"
_DENIED = "RefNotPermitted"


def _convert(*texts: str) -> Conversion:
    loaded = load_text("\n---\n".join([BASE, *texts]), "t.yaml")
    assert loaded.ok, [d.format() for d in loaded.diagnostics]
    return convert_gateway_api(loaded.resources, ConversionContext())


def _status(conv: Conversion) -> Any:
    return conv.statuses[ResourceKey("KubernetesGateway", "infra", "gw")]


def _conditions(items: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in items}


def _listener_conditions(conv: Conversion, name: str) -> dict[str, tuple[str, str]]:
    (ls,) = [x for x in _status(conv)["listeners"] if x["name"] == name]
    return _conditions(ls["conditions"])


def _istio_gateways(conv: Conversion) -> dict[str, Resource]:
    return {r.name: r for r in conv.resources if r.kind == "Gateway"}


def _server_tls(conv: Conversion, listener: str) -> Any:
    spec = _istio_gateways(conv)[f"gw-{listener}-gwapi"].spec
    assert isinstance(spec, IstioGatewaySpec)
    return spec.servers[0].tls


def _secret(conv: Conversion, name: str) -> dict[str, bytes]:
    (secret,) = [r for r in conv.resources if r.kind == "Secret" and r.name == name]
    assert isinstance(secret.spec, SecretSpec)
    return secret.spec.decoded()


def test_default_validation_requires_a_certificate_of_the_configured_ca() -> None:
    conv = _convert(_gateway(f"{{frontend: {{default: {{validation: {_validation(CM)}}}}}}}"))
    tls = _server_tls(conv, "https")
    assert tls.mode == "MUTUAL"
    # The listener's certificate and the CA bundle travel together in one Secret.
    secret = _secret(conv, tls.credential_name)
    assert secret["tls.crt"].decode() == SERVER.cert_pem
    assert secret["ca.crt"].decode().strip() == CLIENT_CA.ca_pem.strip()
    assert _listener_conditions(conv, "https") == {
        "Accepted": ("True", "Accepted"),
        "Programmed": ("True", "Programmed"),
        "ResolvedRefs": ("True", "ResolvedRefs"),
        "Conflicted": ("False", "NoConflicts"),
    }
    gateway = _conditions(_status(conv)["conditions"])
    assert "InsecureFrontendValidationMode" not in gateway
    assert gateway["ResolvedRefs"] == ("True", "ResolvedRefs")


def test_per_port_settings_override_the_default_and_leave_http_alone() -> None:
    other = '{group: "", kind: ConfigMap, name: other-ca, namespace: other}'
    grant = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: cas, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: "", kind: ConfigMap}]
"""
    fallback = _validation(other, mode="AllowInsecureFallback")
    per_port = f"[{{port: 8443, tls: {{validation: {fallback}}}}}]"
    tls = f"{{frontend: {{default: {{validation: {_validation(CM)}}}, perPort: {per_port}}}}}"
    listeners = (_listener("https", 443), _listener("alt", 8443), _listener("http", 80, "HTTP"))
    conv = _convert(_gateway(tls, *listeners), grant)
    assert _server_tls(conv, "https").mode == "MUTUAL"
    alt = _server_tls(conv, "alt")
    assert alt.mode == "OPTIONAL_MUTUAL"
    assert _secret(conv, alt.credential_name)["ca.crt"].decode().strip() == CA.ca_pem.strip()
    gateways = _istio_gateways(conv)
    assert gateways["gw-alt-gwapi"].metadata.annotations[ACCEPT_UNTRUSTED_ANNOTATION] == "true"
    assert ACCEPT_UNTRUSTED_ANNOTATION not in gateways["gw-https-gwapi"].metadata.annotations
    assert _server_tls(conv, "http") is None
    gateway = _conditions(_status(conv)["conditions"])
    assert gateway["InsecureFrontendValidationMode"] == ("True", "ConfigurationChanged")


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ('{group: "", kind: ConfigMap, name: does-not-exist}', "InvalidCACertificateRef"),
        ('{group: "", kind: Secret, name: malformed}', "InvalidCACertificateRef"),
        ('{group: "", kind: Service, name: web}', "InvalidCACertificateKind"),
        ('{group: "", kind: ConfigMap, name: other-ca, namespace: other}', "RefNotPermitted"),
    ],
)
def test_an_unusable_ca_ref_keeps_the_https_listener_unserved(ref: str, reason: str) -> None:
    tls = f"{{frontend: {{default: {{validation: {_validation(ref)}}}}}}}"
    conv = _convert(_gateway(tls, _listener("https", 443), _listener("http", 80, "HTTP")))
    conditions = _listener_conditions(conv, "https")
    assert conditions["ResolvedRefs"] == ("False", reason)
    assert conditions["Accepted"] == ("False", "NoValidCACertificate")
    assert conditions["Programmed"][0] == "False"
    # Fail closed: no server would let clients in without validation.
    assert sorted(_istio_gateways(conv)) == ["gw-http-gwapi"]
    assert _listener_conditions(conv, "http")["Accepted"] == ("True", "Accepted")
    gateway = _conditions(_status(conv)["conditions"])
    assert gateway["Accepted"] == ("True", "Accepted")
    assert gateway["ResolvedRefs"] == ("False", "ListenersNotResolved")
    (finding,) = [d for d in conv.diagnostics if reason in d.message]
    assert finding.field == "spec.tls.frontend.default.validation.caCertificateRefs"


def test_one_bad_ca_ref_beside_a_good_one_is_reported_and_the_listener_served() -> None:
    bad = '{group: "", kind: ConfigMap, name: does-not-exist}'
    conv = _convert(_gateway(f"{{frontend: {{default: {{validation: {_validation(bad, CM)}}}}}}}"))
    conditions = _listener_conditions(conv, "https")
    assert conditions["ResolvedRefs"] == ("False", "InvalidCACertificateRef")
    assert conditions["Accepted"] == ("True", "Accepted")
    assert _server_tls(conv, "https").mode == "MUTUAL"


def test_backend_client_certificate_is_named_on_every_derived_gateway() -> None:
    tls = '{backend: {clientCertificateRef: {group: "", kind: Secret, name: client-cert}}}'
    listeners = (_listener("https", 443), _listener("http", 80, "HTTP"))
    conv = _convert(_gateway(tls, *listeners))
    for gateway in _istio_gateways(conv).values():
        assert gateway.metadata.annotations[BACKEND_CLIENT_CERT_ANNOTATION] == "client-cert"
    assert _conditions(_status(conv)["conditions"])["ResolvedRefs"] == ("True", "ResolvedRefs")


def test_a_granted_backend_client_certificate_is_copied_into_the_gateway_namespace() -> None:
    grant = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: certs, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: "", kind: Secret}]
"""
    ref = '{group: "", kind: Secret, name: shared-client-cert, namespace: other}'
    conv = _convert(_gateway(f"{{backend: {{clientCertificateRef: {ref}}}}}"), grant)
    (gateway,) = _istio_gateways(conv).values()
    copy = gateway.metadata.annotations[BACKEND_CLIENT_CERT_ANNOTATION]
    assert _secret(conv, copy)["tls.crt"].decode() == CLIENT.cert_pem


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ('{group: "", kind: Secret, name: nonexistent}', _INVALID_CLIENT),
        ("{group: wrong.example.io, kind: Secret, name: client-cert}", _INVALID_CLIENT),
        ('{group: "", kind: WrongKind, name: client-cert}', _INVALID_CLIENT),
        ('{group: "", kind: Secret, name: malformed}', _INVALID_CLIENT),
        ('{group: "", kind: Secret, name: shared-client-cert, namespace: other}', _DENIED),
    ],
)
def test_an_unusable_backend_client_certificate_is_the_gateways_resolved_refs(
    ref: str, reason: str
) -> None:
    conv = _convert(_gateway(f"{{backend: {{clientCertificateRef: {ref}}}}}"))
    gateway = _conditions(_status(conv)["conditions"])
    assert gateway["ResolvedRefs"] == ("False", reason)
    assert gateway["Accepted"] == ("True", "Accepted")
    for istio in _istio_gateways(conv).values():
        assert BACKEND_CLIENT_CERT_ANNOTATION not in istio.metadata.annotations
    fields = [d.field for d in conv.diagnostics]
    assert fields == ["spec.tls.backend.clientCertificateRef"]


@pytest.mark.parametrize(
    ("tls", "field", "words"),
    [
        (
            "{frontend: {default: {}, perPort: [{port: 1, tls: {}}, {port: 1, tls: {}}]}}",
            "spec.tls.frontend",
            "unique",
        ),
        ("{frontend: {default: {validation: {caCertificateRefs: []}}}}", "caCertificateRefs", "1"),
        (
            f"{{frontend: {{default: {{validation: {_validation(CM, mode='Sometimes')}}}}}}}",
            "mode",
            "AllowValidOnly",
        ),
        ("{frontend: {perPort: []}}", "default", "required"),
    ],
)
def test_invalid_spec_tls_is_refused_with_its_field(tls: str, field: str, words: str) -> None:
    loaded = load_text(_gateway(tls), "gw.yaml")
    assert not loaded.ok
    (error,) = [d for d in loaded.diagnostics if d.is_error]
    assert error.source is not None and error.source.file == "gw.yaml" and error.source.line
    assert field in error.field and words in error.message, error.format()


def _secure_cluster(view: ProxyView) -> Any:
    config = compose(load_snapshot("gateway-api-tls"), view)
    name = "outbound|8443||secure.default.svc.cluster.local"
    (cluster,) = [c for c in config.clusters if c.name == name]
    return cluster.tls


def test_only_the_gateways_own_proxy_presents_its_backend_client_certificate() -> None:
    """The golden case's Gateway ``web``: its proxy turns the BackendTLSPolicy's
    SIMPLE into MUTUAL with the certificate; a sidecar of the same namespace and
    another Gateway's proxy keep SIMPLE without one."""
    labels = (("gateway.networking.k8s.io/gateway-name", "web"),)
    own = _secure_cluster(ProxyView("gateway", "default", labels=labels, bind_ip="127.0.0.1"))
    assert own.mode == "MUTUAL"
    assert own.client_cert == CertSource(credential="kubernetes://default/web-client")
    assert own.sni == "secure.example.com"
    other_labels = (("gateway.networking.k8s.io/gateway-name", "other"),)
    other = ProxyView("gateway", "default", labels=other_labels, bind_ip="127.0.0.1")
    sidecar = ProxyView("sidecar", "default", labels=(("app", "shop"),), bind_ip="0.0.0.0")
    for view in (other, sidecar):
        tls = _secure_cluster(view)
        assert (tls.mode, tls.client_cert) == ("SIMPLE", None)
