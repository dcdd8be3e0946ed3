"""sign_csr and issue_server_cert: what an honest CSR gets, and what forged ones do not."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from ca_helpers import ec_key, from_der, make_csr, spki, to_der
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pilotfish.ca import (
    CertificateAuthority,
    IdentityMismatchError,
    InvalidRequestError,
    SpiffeId,
)

ID = SpiffeId("cluster.local", "default", "bookinfo")
NOW = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create_root("cluster.local", now=NOW - datetime.timedelta(days=1))


def test_good_csr_gets_a_spiffe_leaf(ca: CertificateAuthority) -> None:
    key = ec_key()
    issued = ca.sign_csr(make_csr(key), ID, datetime.timedelta(hours=2), now=NOW)
    cert = issued.certificate
    cert.verify_directly_issued_by(ca.root_certificate)
    assert spki(key) == spki_of(cert)

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(ID.uri)]
    assert issued.spiffe_id == "spiffe://cluster.local/ns/default/sa/bookinfo"

    assert cert.not_valid_before_utc == NOW - datetime.timedelta(minutes=1)
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(hours=2)
    assert issued.expires_at == int((NOW + datetime.timedelta(hours=2)).timestamp())

    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = ca.root_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == root_ski.value.digest
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert issued.chain_pem == (issued.cert_pem,)  # signed by the root itself
    assert issued.root_pem == ca.root_pem


def spki_of(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_default_ttl_is_a_day(ca: CertificateAuthority) -> None:
    cert = ca.sign_csr(make_csr(), ID, now=NOW).certificate
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(hours=24)


@pytest.mark.parametrize(
    "key",
    [
        rsa.generate_private_key(65537, 2048),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["rsa2048", "p384", "ed25519"],
)
def test_other_strong_keys_are_accepted(ca: CertificateAuthority, key: object) -> None:
    issued = ca.sign_csr(make_csr(key), ID, now=NOW)  # type: ignore[arg-type]
    assert ca.verify(issued.certificate)


def test_wrong_san_is_permission_denied(ca: CertificateAuthority) -> None:
    csr = make_csr(uris=("spiffe://cluster.local/ns/default/sa/admin",))
    with pytest.raises(IdentityMismatchError, match="sa/bookinfo") as info:
        ca.sign_csr(csr, ID, now=NOW)
    assert info.value.status == "PERMISSION_DENIED"


def test_foreign_trust_domain_is_permission_denied(ca: CertificateAuthority) -> None:
    with pytest.raises(IdentityMismatchError):
        ca.sign_csr(make_csr(uris=("spiffe://evil.org/ns/default/sa/bookinfo",)), ID, now=NOW)


@pytest.mark.parametrize(
    ("uris", "dns"),
    [
        ((ID.uri, "spiffe://cluster.local/ns/default/sa/admin"), ()),
        ((ID.uri, ID.uri), ()),
        ((ID.uri,), ("reviews.default.svc.cluster.local",)),
        ((), ("bookinfo",)),
    ],
    ids=["two-uris", "duplicate-uri", "extra-dns", "dns-only"],
)
def test_anything_but_exactly_one_uri_is_denied(
    ca: CertificateAuthority, uris: tuple[str, ...], dns: tuple[str, ...]
) -> None:
    with pytest.raises(IdentityMismatchError):
        ca.sign_csr(make_csr(uris=uris, dns=dns), ID, now=NOW)


def test_csr_without_san_is_denied(ca: CertificateAuthority) -> None:
    with pytest.raises(IdentityMismatchError, match="no subject alternative name"):
        ca.sign_csr(make_csr(san=False), ID, now=NOW)


def test_tampered_csr_has_a_bad_signature(ca: CertificateAuthority) -> None:
    der = bytearray(to_der(make_csr(uris=("spiffe://cluster.local/ns/default/sa/bookinfx",))))
    at = der.find(b"bookinfx")
    der[at + 7] = ord("o")  # now asks for ID, but the signature covers "bookinfx"
    with pytest.raises(InvalidRequestError, match="signature") as info:
        ca.sign_csr(from_der(bytes(der)), ID, now=NOW)
    assert info.value.reason == "bad_signature"
    assert info.value.status == "INVALID_ARGUMENT"


def test_csr_signed_by_another_key_is_refused(ca: CertificateAuthority) -> None:
    # The CSR names the victim's public key but was signed by the attacker's key.
    victim, attacker = ec_key(), ec_key()
    der = to_der(make_csr(attacker))
    forged = der.replace(spki(attacker), spki(victim))
    assert forged != der
    with pytest.raises(InvalidRequestError, match="signature"):
        ca.sign_csr(from_der(forged), ID, now=NOW)


def test_rsa_1024_is_too_weak(ca: CertificateAuthority) -> None:
    weak = rsa.generate_private_key(65537, 1024)
    with pytest.raises(InvalidRequestError, match="1024 bits") as info:
        ca.sign_csr(make_csr(weak), ID, now=NOW)
    assert info.value.reason == "weak_key"


def test_small_curve_is_too_weak(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidRequestError, match="curve"):
        ca.sign_csr(make_csr(ec.generate_private_key(ec.SECP224R1())), ID, now=NOW)


@pytest.mark.parametrize("garbage", ["", "hello", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"])
def test_garbage_is_invalid(ca: CertificateAuthority, garbage: str) -> None:
    with pytest.raises(InvalidRequestError, match="malformed CSR"):
        ca.sign_csr(garbage, ID, now=NOW)


def test_leaf_never_outlives_the_root(ca: CertificateAuthority) -> None:
    issued = ca.sign_csr(make_csr(), ID, datetime.timedelta(days=100_000), now=NOW)
    assert issued.not_after == ca.root_certificate.not_valid_after_utc


def test_server_cert_has_dns_and_bind_ips(ca: CertificateAuthority) -> None:
    pair = ca.issue_server_cert(
        ["pilotfish-control-plane"], ["127.0.0.1", "0.0.0.0", "10.88.0.1", "not-an-ip"], now=NOW
    )
    cert = pair.issued.certificate
    assert ca.verify(cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["pilotfish-control-plane"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.88.0.1"),
    ]
    assert b"PRIVATE KEY" in pair.key_pem
    assert "key_pem" not in repr(pair)


def test_spiffe_id_round_trip_and_validation() -> None:
    assert SpiffeId.parse(ID.uri) == ID
    assert str(ID) == ID.uri
    for bad in ["spiffe://cluster.local/ns/default", "https://x/ns/a/sa/b", "spiffe://c/ns/A/sa/b"]:
        with pytest.raises(ValueError):
            SpiffeId.parse(bad)
