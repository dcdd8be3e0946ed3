"""The workload key, its CSR and the checks on the certificate the CA returns."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilotfish.agent.identity import (
    IdentityError,
    WorkloadKey,
    build_csr,
    certificate_from_response,
    spiffe_id,
)

IDENTITY = "spiffe://cluster.local/ns/bookinfo/sa/reviews"


def _sign_leaf(public_key: ec.EllipticCurvePublicKey, uris: list[str]) -> tuple[str, str]:
    """A leaf for ``public_key`` naming ``uris``, and its self-signed root (PEMs)."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    now = datetime.datetime.now(datetime.UTC)
    root = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "root")]))
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "root")]))
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(0xABCDEF)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(seconds=600))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    enc = serialization.Encoding.PEM
    return leaf.public_bytes(enc).decode(), root.public_bytes(enc).decode()


def test_spiffe_id_format() -> None:
    assert spiffe_id("cluster.local", "bookinfo", "reviews") == IDENTITY
    assert spiffe_id("example.org", "a", "b") == "spiffe://example.org/ns/a/sa/b"


@pytest.mark.parametrize("parts", [("", "ns", "sa"), ("td", "a/b", "sa"), ("td", "ns", "")])
def test_spiffe_id_rejects_empty_or_slashed_parts(parts: tuple[str, str, str]) -> None:
    with pytest.raises(IdentityError):
        spiffe_id(*parts)


def test_csr_is_p256_signed_with_exactly_one_uri_san() -> None:
    key = WorkloadKey.generate()
    csr = x509.load_pem_x509_csr(build_csr(key, IDENTITY).encode())
    assert csr.is_signature_valid
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert (
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == key.public_bytes()
    )
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(IDENTITY)]
    assert len(csr.extensions) == 1
    assert list(csr.subject) == []


def test_every_key_is_new() -> None:
    assert WorkloadKey.generate().public_bytes() != WorkloadKey.generate().public_bytes()


def test_private_key_never_shows_in_reprs() -> None:
    key = WorkloadKey.generate()
    leaf, root = _sign_leaf(key.private_key.public_key(), [IDENTITY])
    cert = certificate_from_response(key, IDENTITY, [leaf], root)
    secret_line = key.private_pem().decode().splitlines()[1]
    assert "PRIVATE" not in repr(key) and secret_line not in repr(key)
    assert "PRIVATE" not in repr(cert) and secret_line not in repr(cert)
    assert "PRIVATE" not in str(cert.summary())
    assert cert.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_certificate_from_response_keeps_chain_times_and_serial() -> None:
    key = WorkloadKey.generate()
    leaf, root = _sign_leaf(key.private_key.public_key(), [IDENTITY])
    cert = certificate_from_response(key, IDENTITY, [leaf], root)
    assert cert.spiffe_id == IDENTITY
    assert cert.cert_chain_pem == leaf if leaf.endswith("\n") else leaf + "\n"
    assert cert.root_cert_pem == root
    assert cert.serial_hex == "abcdef"
    assert cert.lifetime == pytest.approx(600, abs=1)
    summary = cert.summary()
    assert summary["spiffe_id"] == IDENTITY
    assert summary["not_after"] == int(cert.not_after)
    assert str(summary["not_after_iso"]).endswith("Z")


def test_issued_at_is_the_receipt_time_within_the_validity() -> None:
    key = WorkloadKey.generate()
    leaf, root = _sign_leaf(key.private_key.public_key(), [IDENTITY])
    cert = certificate_from_response(key, IDENTITY, [leaf], root)
    assert cert.not_before <= cert.issued_at <= cert.not_before + 5
    late = certificate_from_response(key, IDENTITY, [leaf], root, received_at=cert.not_after + 99)
    assert late.issued_at == late.not_after
    early = certificate_from_response(key, IDENTITY, [leaf], root, received_at=0.0)
    assert early.issued_at == early.not_before


def test_certificate_for_another_key_is_refused() -> None:
    key = WorkloadKey.generate()
    other = WorkloadKey.generate()
    leaf, root = _sign_leaf(other.private_key.public_key(), [IDENTITY])
    with pytest.raises(IdentityError, match="not for the key"):
        certificate_from_response(key, IDENTITY, [leaf], root)


@pytest.mark.parametrize(
    "uris", [["spiffe://cluster.local/ns/bookinfo/sa/ratings"], [IDENTITY, IDENTITY + "x"], []]
)
def test_certificate_for_another_identity_is_refused(uris: list[str]) -> None:
    key = WorkloadKey.generate()
    leaf, root = _sign_leaf(key.private_key.public_key(), uris)
    with pytest.raises(IdentityError, match="names"):
        certificate_from_response(key, IDENTITY, [leaf], root)


def test_empty_or_garbage_chain_is_refused() -> None:
    key = WorkloadKey.generate()
    with pytest.raises(IdentityError, match="empty"):
        certificate_from_response(key, IDENTITY, [], "")
    with pytest.raises(IdentityError, match="unreadable"):
        certificate_from_response(key, IDENTITY, ["not a pem"], "")
