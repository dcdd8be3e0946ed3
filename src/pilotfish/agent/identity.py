"""The workload's identity: its private key, its CSR and the certificate it gets back.

Theory of operation: the agent generates an EC P-256 key in memory for every
certificate it requests. The key never leaves the agent process except inline
in SDS responses to its own Envoy over a local Unix socket: it is never written
to disk and never logged (``WorkloadCertificate`` keeps it out of ``repr``).
The CSR carries exactly one subject alternative name, the URI
``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``; the CA
decides everything else. The certificate that comes back is checked against
the key and the expected SPIFFE id before the agent serves it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "IdentityError",
    "WorkloadCertificate",
    "WorkloadKey",
    "build_csr",
    "certificate_from_response",
    "spiffe_id",
]


class IdentityError(ValueError):
    """A certificate does not match the key or the identity it was requested for."""


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """``spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>``."""
    for what, value in (
        ("trust domain", trust_domain),
        ("namespace", namespace),
        ("service account", service_account),
    ):
        if not value or "/" in value:
            raise IdentityError(f"{what} must be non-empty and contain no '/', got {value!r}")
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


class WorkloadKey:
    """An EC P-256 private key that lives only in this process's memory."""

    __slots__ = ("_key",)

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> WorkloadKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        return self._key

    def public_bytes(self) -> bytes:
        """DER SubjectPublicKeyInfo, to compare with a certificate's key."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM: only for the inline SDS secret sent to the local Envoy."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return "WorkloadKey(<P-256, private>)"


def build_csr(key: WorkloadKey, identity: str) -> str:
    """A PEM CSR signed by ``key`` whose only SAN is the URI ``identity``.

    The subject is empty (SPIFFE identities live in the SAN only), matching
    what the CA issues.
    """
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
            critical=False,
        )
        .sign(key.private_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True, slots=True)
class WorkloadCertificate:
    """An issued certificate with its key, ready to serve over SDS.

    ``cert_chain_pem`` is the leaf first, then intermediates (one PEM string);
    ``root_cert_pem`` the mesh root Envoy trusts for peers. Times are Unix
    seconds; ``issued_at`` is when the agent received it (CAs back-date
    ``not_before`` to absorb clock skew, so renewal is timed from ``issued_at``).
    ``private_key_pem`` is excluded from ``repr`` and must never be logged.
    """

    spiffe_id: str
    cert_chain_pem: str
    root_cert_pem: str
    serial: int
    not_before: float
    not_after: float
    issued_at: float
    private_key_pem: bytes = field(repr=False)

    @property
    def lifetime(self) -> float:
        """Seconds from receipt to expiry (what the workload really gets)."""
        return self.not_after - self.issued_at

    @property
    def serial_hex(self) -> str:
        """The serial as Envoy's admin ``/certs`` shows it (lower-case hex)."""
        return format(self.serial, "x")

    def summary(self) -> dict[str, object]:
        """Public facts about the certificate (never the key), JSON-ready."""
        return {
            "spiffe_id": self.spiffe_id,
            "serial": self.serial_hex,
            "not_before": int(self.not_before),
            "issued_at": int(self.issued_at),
            "not_after": int(self.not_after),
            "not_after_iso": _iso(self.not_after),
        }


def _iso(timestamp: float) -> str:
    return (
        datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
        .isoformat()
        .replace("+00:00", "Z")
    )


def _uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def certificate_from_response(
    key: WorkloadKey,
    identity: str,
    cert_chain: Sequence[str],
    root_cert: str,
    *,
    received_at: float | None = None,
) -> WorkloadCertificate:
    """Check the CA's answer and bundle it with ``key``.

    ``received_at`` (default: now) becomes ``issued_at``, clamped into the
    certificate's validity.

    Raises ``IdentityError`` when the chain is empty or unparsable, when the
    leaf's public key is not ``key``'s, or when the leaf's URI SANs are not
    exactly ``[identity]``.
    """
    if not cert_chain:
        raise IdentityError("the CA returned an empty certificate chain")
    try:
        leaf = x509.load_pem_x509_certificate(cert_chain[0].encode("ascii"))
        if root_cert:
            x509.load_pem_x509_certificate(root_cert.encode("ascii"))
    except ValueError as exc:
        raise IdentityError(f"the CA returned an unreadable certificate: {exc}") from exc
    leaf_key = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if leaf_key != key.public_bytes():
        raise IdentityError("the issued certificate is not for the key the agent generated")
    sans = _uri_sans(leaf)
    if sans != [identity]:
        raise IdentityError(f"the issued certificate names {sans}, expected [{identity!r}]")
    chain = "".join(pem if pem.endswith("\n") else pem + "\n" for pem in cert_chain)
    not_before = leaf.not_valid_before_utc.timestamp()
    not_after = leaf.not_valid_after_utc.timestamp()
    received = time.time() if received_at is None else received_at
    return WorkloadCertificate(
        spiffe_id=identity,
        cert_chain_pem=chain,
        root_cert_pem=root_cert,
        serial=leaf.serial_number,
        not_before=not_before,
        not_after=not_after,
        issued_at=min(max(received, not_before), not_after),
        private_key_pem=key.private_pem(),
    )
