"""The CA-signed certificates upstream's suite makes at setup, for the TLS tests.

Upstream's ``ConformanceTestSuite.Setup`` makes, besides the two self-signed
HTTPS certificates (``certs``), CAs published as ConfigMaps (``ca.crt``,
``MustCreateCACertConfigMap``) and certificates they sign as
``kubernetes.io/tls`` Secrets (``MustCreateCASignedCertSecret`` for servers,
``MustCreateCASignedClientCertSecret`` for clients):

- ``tls-validity-checks-ca-certificate`` and ``-per-port-ca-certificate``,
  each with a client certificate, for the frontend client-certificate
  validation tests;
- ``tls-checks-ca-certificate``, signing ``tls-checks-certificate`` (the TLS
  backends' serving certificate: ``abc.example.com``,
  ``spiffe://abc.example.com/test-identity``, ``other.example.com``),
  ``tls-checks-client-certificate``, ``tls-passthrough-checks-certificate``
  (in the infra and app-backend namespaces) and
  ``tls-terminate-checks-certificate``;
- ``mismatch-ca-certificate``: a CA that signed nothing, so validating
  against it fails; ``web-backend-cm`` likewise, in the web-backend namespace.

``SuiteTls.make()`` makes them all (real X.509 from ``cryptography``) and
keeps the PEMs the tests send with (client certificates and keys).
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field

import yaml
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki import TestCa

INFRA = "gateway-conformance-infra"
APP_BACKEND = "gateway-conformance-app-backend"
WEB_BACKEND = "gateway-conformance-web-backend"
#: The names in the TLS backends' serving certificate (upstream's list).
TLS_CHECKS_HOSTS = (
    "abc.example.com",
    "spiffe://abc.example.com/test-identity",
    "other.example.com",
)


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _split(hosts: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(DNS names, URIs, IPs), as upstream's generateRSACert: an IP, else a URI
    (``://``), else a DNS name."""
    ips: list[str] = []
    uris: list[str] = []
    dns: list[str] = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            ips.append(host)
        except ValueError:
            (uris if "://" in host else dns).append(host)
    return tuple(dns), tuple(uris), tuple(ips)


class Authority:
    """A CA as ``MustCreateCACertConfigMap`` makes one (upstream's subject)."""

    def __init__(self) -> None:
        self.ca = TestCa("gatewayapi", organization="Kubernetes Gateway API")

    @property
    def pem(self) -> bytes:
        return self.ca.ca_pem.encode()

    def sign(self, hosts: tuple[str, ...], client: bool = False) -> KeyPair:
        """A server (``hosts`` as its names) or client certificate signed by this CA."""
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        dns, uris, ips = _split(hosts)
        leaf = self.ca.issue("default", dns, uris, ips=ips, organization="Acme Co", usage=(usage,))
        return KeyPair(leaf.cert_pem.encode(), leaf.key_pem.encode())


def config_map(namespace: str, name: str, ca: Authority) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"ca.crt": ca.pem.decode()},
    }


def tls_secret(namespace: str, name: str, pair: KeyPair) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(pair.cert_pem).decode(),
            "tls.key": base64.b64encode(pair.key_pem).decode(),
        },
    }


@dataclass
class SuiteTls:
    """The suite's CAs and certificates, as documents and as the PEMs tests send."""

    documents: list[dict[str, object]] = field(default_factory=list)
    client: KeyPair | None = None  # tls-validity-checks-client-certificate
    per_port_client: KeyPair | None = None  # tls-validity-checks-per-port-client-certificate
    checks_ca: Authority | None = None  # tls-checks-ca-certificate
    checks_client: KeyPair | None = None  # tls-checks-client-certificate

    @classmethod
    def make(cls) -> SuiteTls:
        out = cls()
        docs = out.documents
        docs.append(config_map(WEB_BACKEND, "web-backend-cm", Authority()))
        validity = Authority()
        out.client = validity.sign((), client=True)
        docs.append(config_map(INFRA, "tls-validity-checks-ca-certificate", validity))
        docs.append(tls_secret(INFRA, "tls-validity-checks-client-certificate", out.client))
        per_port = Authority()
        out.per_port_client = per_port.sign((), client=True)
        docs.append(config_map(INFRA, "tls-validity-checks-per-port-ca-certificate", per_port))
        name = "tls-validity-checks-per-port-client-certificate"
        docs.append(tls_secret(INFRA, name, out.per_port_client))
        checks = out.checks_ca = Authority()
        docs.append(config_map(INFRA, "tls-checks-ca-certificate", checks))
        docs.append(tls_secret(INFRA, "tls-checks-certificate", checks.sign(TLS_CHECKS_HOSTS)))
        client = out.checks_client = checks.sign((), client=True)
        docs.append(tls_secret(INFRA, "tls-checks-client-certificate", client))
        passthrough = ("abc.example.com",)
        for namespace in (INFRA, APP_BACKEND):
            pair = checks.sign(passthrough)
            docs.append(tls_secret(namespace, "tls-passthrough-checks-certificate", pair))
        terminate = checks.sign(("tls.example.com",))
        docs.append(tls_secret(INFRA, "tls-terminate-checks-certificate", terminate))
        docs.append(config_map(INFRA, "mismatch-ca-certificate", Authority()))
        return out

    def manifest(self) -> str:
        return yaml.safe_dump_all(self.documents)


#: The module's suite certificates, made once at import: the cases name the
#: client certificates they send, and the mesh is given the same ones.
SUITE: list[SuiteTls] = [SuiteTls.make()]
