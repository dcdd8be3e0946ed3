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
import datetime
import ipaddress
from dataclasses import dataclass, field

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    """As upstream's generateRSACert: an IP, else a DNS name, else a URI."""
    out: list[x509.GeneralName] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if "://" in host:
                out.append(x509.UniformResourceIdentifier(host))
            else:
                out.append(x509.DNSName(host))
    return out


class Authority:
    """A CA as ``MustCreateCACertConfigMap`` makes one."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kubernetes Gateway API"),
                x509.NameAttribute(NameOID.COMMON_NAME, "gatewayapi"),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.subject)
            .issuer_name(self.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def sign(self, hosts: tuple[str, ...], client: bool = False) -> KeyPair:
        """A server (``hosts`` as its names) or client certificate signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "default"),
                    ]
                )
            )
            .issuer_name(self.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(_names(hosts)), False)
        cert = builder.sign(self.key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


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
        client = checks.sign((), client=True)
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


#: The running module's suite certificates (set once the mesh is up).
SUITE: list[SuiteTls] = []
