"""Root creation, reload, operator-supplied CA files and key-file permissions."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from ca_helpers import make_csr
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilotfish.ca import CertificateAuthority, KeyFileError, SpiffeId
from pilotfish.ca.authority import ROOT_CERT_FILE, ROOT_KEY_FILE


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_a_private_root(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    ca = CertificateAuthority.load_or_create(ca_dir, "example.org")
    assert _mode(ca_dir) == 0o700
    assert _mode(ca_dir / ROOT_KEY_FILE) == 0o600
    assert _mode(ca_dir / ROOT_CERT_FILE) == 0o644

    root = x509.load_pem_x509_certificate((ca_dir / ROOT_CERT_FILE).read_bytes())
    assert root.public_bytes(serialization.Encoding.PEM).decode() == ca.root_pem
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Pilotfish"
    cn = root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "Pilotfish root example.org"
    basic = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and not usage.digital_signature
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert datetime.timedelta(days=3649) < lifetime < datetime.timedelta(days=3652)
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    root.verify_directly_issued_by(root)


def test_second_start_reloads_the_same_root(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path / "ca", "cluster.local")
    second = CertificateAuthority.load_or_create(tmp_path / "ca", "cluster.local")
    assert second.root_pem == first.root_pem
    # and the reloaded key signs certificates that chain to the same root
    issued = second.sign_csr(
        make_csr(), SpiffeId("cluster.local", "default", "bookinfo"), datetime.timedelta(hours=1)
    )
    issued.certificate.verify_directly_issued_by(first.root_certificate)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    CertificateAuthority.load_or_create(tmp_path / "ca", "cluster.local")
    key = tmp_path / "ca" / ROOT_KEY_FILE
    key.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        CertificateAuthority.load_or_create(tmp_path / "ca", "cluster.local")


def _write_operator_ca(tmp_path: Path, key_mode: int = 0o600) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create_root("corp.example")
    cert_file = tmp_path / "corp-root.pem"
    key_file = tmp_path / "corp-key.pem"
    cert_file.write_text(ca.root_pem)
    key_file.write_bytes(
        ca._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(key_mode)
    return cert_file, key_file


def test_operator_root_files_are_used(tmp_path: Path) -> None:
    cert_file, key_file = _write_operator_ca(tmp_path)
    ca = CertificateAuthority.load_or_create(
        tmp_path / "unused", "cluster.local", root_cert_file=cert_file, root_key_file=key_file
    )
    assert ca.root_pem == cert_file.read_text()
    assert not (tmp_path / "unused").exists()
    issued = ca.sign_csr(make_csr(), SpiffeId("cluster.local", "default", "bookinfo"))
    assert ca.verify(issued.certificate)


def test_operator_key_with_loose_permissions_is_refused(tmp_path: Path) -> None:
    cert_file, key_file = _write_operator_ca(tmp_path, key_mode=0o644)
    with pytest.raises(KeyFileError, match="group or others"):
        CertificateAuthority.load_or_create(
            tmp_path, "cluster.local", root_cert_file=cert_file, root_key_file=key_file
        )


def test_operator_key_that_does_not_match_is_refused(tmp_path: Path) -> None:
    cert_file, _ = _write_operator_ca(tmp_path / "a")
    _, other_key = _write_operator_ca(tmp_path / "b")
    with pytest.raises(KeyFileError, match="does not"):
        CertificateAuthority.load_or_create(
            tmp_path, "cluster.local", root_cert_file=cert_file, root_key_file=other_key
        )


def test_only_one_of_the_operator_files_is_an_error(tmp_path: Path) -> None:
    cert_file, _ = _write_operator_ca(tmp_path)
    with pytest.raises(KeyFileError, match="both"):
        CertificateAuthority.load_or_create(tmp_path, "cluster.local", root_cert_file=cert_file)
