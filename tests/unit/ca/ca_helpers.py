"""Building CSRs (honest and forged) for the CA tests."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(
    key: PrivateKey | None = None,
    uris: tuple[str, ...] = ("spiffe://cluster.local/ns/default/sa/bookinfo",),
    dns: tuple[str, ...] = (),
    *,
    san: bool = True,
) -> bytes:
    """A PEM CSR signed by ``key`` asking for ``uris`` (+ ``dns``) as SANs."""
    key = key if key is not None else ec_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def to_der(csr_pem: bytes) -> bytes:
    return x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)


def from_der(der: bytes) -> bytes:
    import base64

    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    text = "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines)
    return (text + "\n-----END CERTIFICATE REQUEST-----\n").encode("ascii")


def spki(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
