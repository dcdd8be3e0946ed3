"""A Gateway's ``spec.tls``: client-certificate validation and the backend client certificate.

Theory of operation. Pilotfish serves certificates to gateway proxies as
Secrets over SDS, and a gateway proxy reads only Secrets of its own
namespace, so whatever ``spec.tls`` names ends up as a Secret in the
Gateway's namespace:

- ``frontend``: an HTTPS listener takes the ``perPort`` entry of its port, or
  ``default``. Its ``caCertificateRefs`` (ConfigMaps or Secrets with a
  ``ca.crt``; another namespace only with a ReferenceGrant) are bundled with
  the listener's certificate into a derived Secret (``tls.crt``, ``tls.key``,
  ``ca.crt``), which the listener's Istio server uses in ``MUTUAL`` mode: the
  handshake requires a client certificate signed by one of the CAs.
  ``AllowInsecureFallback`` makes it ``OPTIONAL_MUTUAL`` with
  ``ACCEPT_UNTRUSTED_ANNOTATION`` on the Istio Gateway: a certificate is asked
  for, and a missing or unverifiable one is still let through, as the spec
  defines the mode. Each bad ref sets the listener's ``ResolvedRefs`` False
  (``InvalidCACertificateKind``, ``RefNotPermitted``,
  ``InvalidCACertificateRef``); when none is usable the listener is
  ``Accepted: False, NoValidCACertificate`` and not served at all, so nothing
  gets in without validation.
- ``backend.clientCertificateRef``: a ``kubernetes.io/tls``-shaped Secret
  (``tls.crt`` and ``tls.key``), copied into the Gateway's namespace when a
  ReferenceGrant lets it come from another. Every Istio Gateway derived from
  the Gateway carries ``BACKEND_CLIENT_CERT_ANNOTATION`` naming it; the
  gateway proxy's clusters to BackendTLSPolicy backends present it
  (``translate.clusters``). A bad ref is the Gateway's ``ResolvedRefs: False``
  (``InvalidClientCertificateRef`` or ``RefNotPermitted``), and the Gateway
  connects without a client certificate.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography import x509

from pilotfish.api.core.config_map import ConfigMapSpec
from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.gateway_api.gateway import FrontendTLSValidation, GatewaySpec, Listener
from pilotfish.api.resource import Resource
from pilotfish.translate.gateway_api.derived import derived, safe_name
from pilotfish.translate.gateway_api.index import ConfigIndex
from pilotfish.translate.gateway_api.status import Condition
from pilotfish.translate.gateway_markers import (
    ACCEPT_UNTRUSTED_ANNOTATION,
    BACKEND_CLIENT_CERT_ANNOTATION,
)

__all__ = [
    "ACCEPT_UNTRUSTED_ANNOTATION",
    "BACKEND_CLIENT_CERT_ANNOTATION",
    "BackendClientCert",
    "FrontendValidation",
    "backend_client_cert",
    "frontend_validation",
    "mutual_secret",
]


def _certificates_in(pem: bytes) -> bool:
    try:
        return bool(x509.load_pem_x509_certificates(pem))
    except ValueError:
        return False


@dataclass(frozen=True)
class FrontendValidation:
    """A listener's client-certificate validation: the CA bundle of its usable refs
    ("" when none is), the ResolvedRefs failure of a bad ref, and the mode."""

    ca_pem: str
    failed: Condition | None
    insecure_fallback: bool


def _ca_of(
    index: ConfigIndex,
    config_maps: dict[tuple[str, str], Resource],
    kind: str,
    namespace: str,
    name: str,
) -> bytes:
    if kind == "ConfigMap":
        cm = config_maps.get((namespace, name))
        spec = cm.spec if cm is not None else None
        data = spec.data if isinstance(spec, ConfigMapSpec) else {}
        return data.get("ca.crt", "").encode()
    secret = index.secrets.get((namespace, name))
    if secret is None or not isinstance(secret.spec, SecretSpec):
        return b""
    try:
        return secret.spec.decoded().get("ca.crt", b"")
    except ValueError:
        return b""


def _resolve(
    gw: Resource,
    validation: FrontendTLSValidation,
    index: ConfigIndex,
    config_maps: dict[tuple[str, str], Resource],
) -> FrontendValidation:
    pems: list[str] = []
    failed: Condition | None = None
    for ref in validation.ca_certificate_refs:
        ns = ref.namespace or gw.namespace
        where = f"caCertificateRef {ref.kind} {ns}/{ref.name}"
        if ref.group != "" or ref.kind not in ("ConfigMap", "Secret"):
            failed = failed or Condition(
                "ResolvedRefs",
                False,
                "InvalidCACertificateKind",
                f"{where}: only ConfigMaps and Secrets hold CA certificates",
            )
            continue
        if not index.reference_allowed("Gateway", gw.namespace, "", ref.kind, ns, ref.name):
            failed = failed or Condition(
                "ResolvedRefs", False, "RefNotPermitted", f"{where}: no ReferenceGrant in {ns}"
            )
            continue
        pem = _ca_of(index, config_maps, ref.kind, ns, ref.name)
        if not _certificates_in(pem):
            failed = failed or Condition(
                "ResolvedRefs",
                False,
                "InvalidCACertificateRef",
                f"{where} does not exist or has no certificate under key ca.crt",
            )
            continue
        pems.append(pem.decode().strip() + "\n")
    insecure = validation.mode == "AllowInsecureFallback"
    return FrontendValidation("".join(pems), failed, insecure)


def frontend_validation(
    gw: Resource,
    listener: Listener,
    index: ConfigIndex,
    config_maps: dict[tuple[str, str], Resource],
) -> FrontendValidation | None:
    """The validation an HTTPS listener applies to client certificates, or None."""
    spec = gw.spec
    assert isinstance(spec, GatewaySpec)
    if listener.protocol != "HTTPS" or spec.tls is None or spec.tls.frontend is None:
        return None
    validation = spec.tls.frontend.for_port(listener.port).validation
    if validation is None:
        return None
    return _resolve(gw, validation, index, config_maps)


def mutual_secret(
    gw: Resource, listener: Listener, source: Resource, ca_pem: str
) -> Resource | None:
    """A Secret in the Gateway's namespace holding the listener's certificate (the
    Secret ``source``) and the CA bundle, for a MUTUAL server."""
    if not isinstance(source.spec, SecretSpec):
        return None
    try:
        data = source.spec.decoded()
    except ValueError:
        return None
    encoded = {
        "tls.crt": base64.b64encode(data.get("tls.crt", b"")).decode(),
        "tls.key": base64.b64encode(data.get("tls.key", b"")).decode(),
        "ca.crt": base64.b64encode(ca_pem.encode()).decode(),
    }
    spec = SecretSpec(type="kubernetes.io/tls", data=encoded)
    name = safe_name(gw.name, listener.name, source.namespace, source.name, "mtls")
    return derived("Secret", "v1", gw.namespace, name, spec, [gw])


@dataclass(frozen=True)
class BackendClientCert:
    """The Gateway's backend client certificate: the Secret name in its namespace
    ("" when none is usable), a copy to derive, and the Gateway's ResolvedRefs."""

    secret: str
    copy: Resource | None
    resolved: Condition


def backend_client_cert(gw: Resource, index: ConfigIndex) -> BackendClientCert | None:
    """``spec.tls.backend.clientCertificateRef`` resolved, or None when unset."""
    spec = gw.spec
    assert isinstance(spec, GatewaySpec)
    backend = spec.tls.backend if spec.tls is not None else None
    ref = backend.client_certificate_ref if backend is not None else None
    if ref is None:
        return None
    ns = ref.namespace or gw.namespace
    where = f"clientCertificateRef {ref.group or 'core'}/{ref.kind} {ns}/{ref.name}"

    def invalid(reason: str, why: str) -> BackendClientCert:
        return BackendClientCert("", None, Condition("ResolvedRefs", False, reason, why))

    if ref.group != "" or ref.kind != "Secret":
        return invalid("InvalidClientCertificateRef", f"{where}: only Secrets are supported")
    if not index.reference_allowed("Gateway", gw.namespace, "", "Secret", ns, ref.name):
        return invalid("RefNotPermitted", f"{where}: no ReferenceGrant in {ns} allows it")
    source = index.secrets.get((ns, ref.name))
    if source is None or not isinstance(source.spec, SecretSpec):
        return invalid("InvalidClientCertificateRef", f"{where} does not exist")
    try:
        data = source.spec.decoded()
    except ValueError:
        data = {}
    if not (_certificates_in(data.get("tls.crt", b"")) and data.get("tls.key")):
        return invalid("InvalidClientCertificateRef", f"{where} has no tls.crt and tls.key")
    resolved = Condition("ResolvedRefs", True, "ResolvedRefs")
    if ns == gw.namespace:
        return BackendClientCert(ref.name, None, resolved)
    copy = derived("Secret", "v1", gw.namespace, safe_name(ns, ref.name), source.spec, [gw])
    return BackendClientCert(copy.name, copy, resolved)
