"""A throwaway PKI for tests: a CA issuing TLS leaves, and Secret manifests holding them."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["SERVER_AND_CLIENT", "Leaf", "TestCa", "serial_of", "tls_secret"]


class Leaf:
    """An issued certificate (PEM) with its key (PEM) and serial number."""

    __test__ = False

    def __init__(self, cert_pem: str, key_pem: str, serial: int) -> None:
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self.serial = serial


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


#: What a leaf may be used for: TLS server and client (the default), or one of them.
SERVER_AND_CLIENT = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


class TestCa:
    """A self-signed CA valid for a day."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "Pilotfish test CA", organization: str | None = None) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._subject = _name(name, organization)
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._subject)
            .issuer_name(self._subject)
            .public_key(self._key.public_key())
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
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def ca_pem(self) -> str:
        return self._cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def issue(
        self,
        common_name: str,
        dns: tuple[str, ...] = (),
        uris: tuple[str, ...] = (),
        *,
        ips: tuple[str, ...] = (),
        organization: str | None = None,
        usage: tuple[x509.ObjectIdentifier, ...] = SERVER_AND_CLIENT,
    ) -> Leaf:
        """A leaf for TLS servers and clients (``usage``), with DNS, URI (SPIFFE)
        and IP names."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return Leaf(
            cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            key_pem,
            cert.serial_number,
        )


def serial_of(cert: bytes | str) -> int:
    """The serial number of a DER (bytes) or PEM (str) certificate."""
    if isinstance(cert, str):
        return x509.load_pem_x509_certificate(cert.encode()).serial_number
    return x509.load_der_x509_certificate(cert).serial_number


def tls_secret(name: str, namespace: str, leaf: Leaf, ca_pem: str | None = None) -> str:
    """A ``kubernetes.io/tls`` Secret manifest (JSON, a YAML subset), with ``ca.crt``
    when ``ca_pem`` is given."""
    data = {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem}
    if ca_pem is not None:
        data["ca.crt"] = ca_pem
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v.encode()).decode("ascii") for k, v in data.items()},
    }
    return json.dumps(doc) + "\n"
