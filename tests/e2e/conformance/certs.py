"""The TLS Secrets upstream's suite creates before its tests run.

Upstream's ``ConformanceTestSuite.Setup`` makes self-signed certificates with
``MustCreateSelfSignedCertSecret`` (``certificate`` in the web-backend
namespace for ``*``; ``tls-validity-checks-certificate`` in the infra
namespace for ``*``, ``*.org`` and ``*.wildcard.org``), which the base
manifests' HTTPS listeners name. This module makes the same ones, real X.509
from ``cryptography``, as ``kubernetes.io/tls`` Secret documents.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SelfSigned:
    secret_yaml: str
    cert_pem: bytes
    cert_der: bytes


def self_signed_secret(namespace: str, name: str, hosts: tuple[str, ...]) -> SelfSigned:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gateway-conformance")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }
    der = cert.public_bytes(serialization.Encoding.DER)
    return SelfSigned(yaml.safe_dump(doc), cert_pem, der)
