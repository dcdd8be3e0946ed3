"""The mesh root of trust: keeps the root key and signs workload certificates.

Theory of operation
-------------------
``CertificateAuthority.load_or_create`` either uses an operator-supplied CA
certificate + key, or keeps a self-signed root in a private directory
(``root-cert.pem`` 0644, ``root-key.pem`` 0600, directory 0700), creating it
on first start and reloading it afterwards. A key file that group or others
can read is refused: a leaked root key would let anyone mint identities.

``sign_csr`` is the only way a workload gets an identity. The CSR proves
possession of its key (its signature must verify), the key must be strong,
and it must ask for exactly one identity: a single URI SAN equal to the
SPIFFE id the caller was authenticated as (decided by the caller, from the
pod token). Nothing else from the CSR is copied into the certificate: the
subject is empty and the SAN is written by the CA, so a CSR cannot smuggle in
extensions, CA rights or extra names.

All methods are pure with respect to the process (no network, no globals);
only ``load_or_create`` touches the file system.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pilotfish.ca.errors import IdentityMismatchError, InvalidRequestError
from pilotfish.ca.identity import SpiffeId
from pilotfish.fsutil import atomic_write

__all__ = [
    "CONTROL_PLANE_DNS_NAME",
    "ROOT_CERT_FILE",
    "ROOT_KEY_FILE",
    "CaKey",
    "CertificateAuthority",
    "IssuedCert",
    "KeyFileError",
    "ServerKeyPair",
    "check_key_strength",
]

ROOT_CERT_FILE = "root-cert.pem"
ROOT_KEY_FILE = "root-key.pem"
# Taken while the root is created, so replicas sharing the directory share one root.
ROOT_LOCK_FILE = ".root.lock"
CONTROL_PLANE_DNS_NAME = "pilotfish-control-plane"

ROOT_VALIDITY = datetime.timedelta(days=3650)
DEFAULT_TTL = datetime.timedelta(hours=24)
# notBefore is backdated so a peer whose clock is slightly behind accepts a fresh cert.
_BACKDATE = datetime.timedelta(minutes=1)

CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)


class KeyFileError(ValueError):
    """A CA certificate or key file is missing, unreadable, unsafe or inconsistent."""


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A freshly signed certificate. ``chain_pem`` is leaf first, then intermediates."""

    certificate: x509.Certificate
    chain_pem: tuple[str, ...]
    root_pem: str
    serial: int
    not_after: datetime.datetime  # timezone-aware UTC
    spiffe_id: str = ""  # empty for the control plane's own server certificate

    @property
    def cert_pem(self) -> str:
        return self.chain_pem[0]

    @property
    def expires_at(self) -> int:
        return int(self.not_after.timestamp())


@dataclass(frozen=True, slots=True)
class ServerKeyPair:
    """The control plane's own TLS certificate chain and key (PEM)."""

    issued: IssuedCert
    key_pem: bytes = field(repr=False)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _hash_for(key: CaKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # Ed25519 signs the message itself
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _check_private_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"cannot read CA key {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"CA key {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """``flock`` on ``<directory>/.root.lock`` for as long as the block runs."""
    fd = os.open(directory / ROOT_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write(path: Path, data: bytes, mode: int) -> None:
    # The temporary file is 0600 until written: the key is never readable by others.
    atomic_write(path, data, mode=mode)


def check_key_strength(key: object) -> None:
    """Accept RSA >= 2048 bits, EC P-256/P-384 and Ed25519; InvalidRequestError otherwise."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InvalidRequestError(
                f"RSA key of {key.key_size} bits is too weak (need >= 2048)", "weak_key"
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _ACCEPTED_CURVES):
            raise InvalidRequestError(
                f"EC curve {key.curve.name} is not accepted (use P-256 or P-384)", "weak_key"
            )
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    raise InvalidRequestError(
        f"key type {type(key).__name__} is not accepted (use EC P-256, RSA >= 2048 or Ed25519)",
        "weak_key",
    )


class CertificateAuthority:
    """Signs SPIFFE workload certificates and the control plane's server certificate."""

    def __init__(
        self,
        trust_domain: str,
        ca_cert: x509.Certificate,
        ca_key: CaKey,
        *,
        chain: Sequence[x509.Certificate] = (),
        root: x509.Certificate | None = None,
    ) -> None:
        """``ca_cert``/``ca_key`` sign; ``chain`` are intermediates between it and ``root``
        (``root`` defaults to ``ca_cert``, a self-signed root)."""
        if _spki(ca_cert.public_key()) != _spki(ca_key.public_key()):
            raise KeyFileError("the CA key does not belong to the CA certificate")
        self.trust_domain = trust_domain
        self._cert = ca_cert
        self._key = ca_key
        self._root = root if root is not None else ca_cert
        # What a leaf's chain carries after the leaf: the signing cert unless it is the root.
        intermediates = [ca_cert, *chain] if root is not None and ca_cert != root else []
        self._chain_pem = tuple(_pem(c) for c in intermediates)
        self.root_pem = _pem(self._root)
        try:
            issuer_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            self._aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer_ski.value
            )
        except x509.ExtensionNotFound:
            self._aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    # -- creation ----------------------------------------------------------------------

    @classmethod
    def create_root(
        cls, trust_domain: str, *, key: CaKey | None = None, now: datetime.datetime | None = None
    ) -> CertificateAuthority:
        """A new self-signed root (EC P-256 unless ``key`` is given), valid 10 years."""
        key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        now = now or _now()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pilotfish"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Pilotfish root {trust_domain}"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + ROOT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(ski, critical=False)
            .sign(key, _hash_for(key))
        )
        return cls(trust_domain, cert, key)

    @classmethod
    def load_or_create(
        cls,
        directory: Path,
        trust_domain: str,
        *,
        root_cert_file: Path | str | None = None,
        root_key_file: Path | str | None = None,
    ) -> CertificateAuthority:
        """The operator's CA (both files given), else the root kept in ``directory``.

        The directory is created 0700 on first start together with a new root.
        Raises ``KeyFileError`` for unsafe permissions, unreadable or mismatched files.
        """
        if (root_cert_file is None) != (root_key_file is None):
            raise KeyFileError("give both the root certificate and the root key file, or neither")
        if root_cert_file is not None and root_key_file is not None:
            return cls._load(Path(root_cert_file), Path(root_key_file), trust_domain)
        directory = Path(directory)
        cert_path, key_path = directory / ROOT_CERT_FILE, directory / ROOT_KEY_FILE
        if cert_path.exists() and key_path.exists():
            return cls._load(cert_path, key_path, trust_domain)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        # Replicas started together on one directory must end up with one root:
        # the first to take the lock creates it, the others load it (and never
        # see the key without its certificate, which is written second).
        with _directory_lock(directory):
            if cert_path.exists() or key_path.exists():
                return cls._load(cert_path, key_path, trust_domain)
            return cls._create_in(cert_path, key_path, trust_domain)

    @classmethod
    def _create_in(cls, cert_path: Path, key_path: Path, trust_domain: str) -> CertificateAuthority:
        ca = cls.create_root(trust_domain)
        key_pem = ca._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(key_path, key_pem, 0o600)
        _write(cert_path, ca.root_pem.encode("ascii"), 0o644)
        return ca

    @classmethod
    def _load(cls, cert_path: Path, key_path: Path, trust_domain: str) -> CertificateAuthority:
        _check_private_file(key_path)
        try:
            certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot load CA certificate {cert_path}: {exc}") from exc
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError(f"cannot load CA key {key_path}: {exc}") from exc
        if not isinstance(
            key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
        ):
            raise KeyFileError(f"CA key {key_path} has an unsupported type {type(key).__name__}")
        signing = certs[0]
        try:
            is_ca = signing.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise KeyFileError(f"{cert_path} is not a CA certificate (basicConstraints CA:false)")
        root = certs[-1]
        try:
            return cls(trust_domain, signing, key, chain=certs[1:-1], root=root)
        except KeyFileError as exc:
            raise KeyFileError(f"{key_path} does not match {cert_path}: {exc}") from exc

    # -- properties --------------------------------------------------------------------

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._root

    @property
    def signing_certificate(self) -> x509.Certificate:
        return self._cert

    # -- signing -----------------------------------------------------------------------

    def sign_csr(
        self,
        csr_pem: str | bytes,
        identity: SpiffeId,
        ttl: datetime.timedelta = DEFAULT_TTL,
        *,
        now: datetime.datetime | None = None,
    ) -> IssuedCert:
        """Issue a workload certificate for ``identity`` from a CSR.

        Raises ``InvalidRequestError`` (unparsable CSR, bad signature, weak key)
        or ``IdentityMismatchError`` (the CSR does not ask for exactly ``identity``).
        """
        data = csr_pem.encode("ascii", "replace") if isinstance(csr_pem, str) else csr_pem
        try:
            csr = x509.load_pem_x509_csr(data)
        except ValueError as exc:
            raise InvalidRequestError(f"malformed CSR: {exc}", "invalid_csr") from exc
        try:
            signature_ok = csr.is_signature_valid
            public_key = csr.public_key()
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound as exc:
            raise IdentityMismatchError(
                f"CSR has no subject alternative name; it must carry exactly {identity.uri}",
                "identity_mismatch",
            ) from exc
        except Exception as exc:  # bad encodings, duplicate extensions, unsupported keys
            raise InvalidRequestError(f"malformed CSR: {exc}", "invalid_csr") from exc
        if not signature_ok:
            raise InvalidRequestError(
                "CSR signature does not verify (tampered, or signed by another key)",
                "bad_signature",
            )
        check_key_strength(public_key)
        names = [str(getattr(n, "value", n)) for n in san]
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        if len(names) != 1 or len(uris) != 1 or uris[0] != identity.uri:
            raise IdentityMismatchError(
                f"CSR asks for {names}; it must carry exactly one URI SAN, {identity.uri}",
                "identity_mismatch",
            )
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
        return self._issue(public_key, sans, ttl, now, spiffe_id=identity.uri)

    def issue_server_cert(
        self,
        dns_names: Sequence[str] = (CONTROL_PLANE_DNS_NAME,),
        ips: Sequence[str] = (),
        ttl: datetime.timedelta = datetime.timedelta(days=365),
        *,
        now: datetime.datetime | None = None,
    ) -> ServerKeyPair:
        """A new key and certificate for the control plane's TLS port.

        Unspecified addresses (``0.0.0.0``, ``::``) and non-IP strings in ``ips``
        are skipped: a client never connects to them.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns_names)]
        for text in dict.fromkeys(ips):
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if not address.is_unspecified:
                sans.append(x509.IPAddress(address))
        issued = self._issue(key.public_key(), sans, ttl, now, spiffe_id="")
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return ServerKeyPair(issued=issued, key_pem=key_pem)

    def verify(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` was signed by this CA's signing key (signature only)."""
        try:
            cert.verify_directly_issued_by(self._cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def _issue(
        self,
        public_key: object,
        sans: list[x509.GeneralName],
        ttl: datetime.timedelta,
        now: datetime.datetime | None,
        *,
        spiffe_id: str,
    ) -> IssuedCert:
        if ttl <= datetime.timedelta(0):
            raise InvalidRequestError("certificate TTL must be positive", "bad_request")
        now = now or _now()
        # A certificate never outlives its issuer.
        not_after = min(now + ttl, self._cert.not_valid_after_utc)
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))  # identity lives in the SAN (critical), as in SPIFFE
            .issuer_name(self._cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(serial)
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key),  # type: ignore[arg-type]
                critical=False,
            )
            .add_extension(self._aki, critical=False)
        )
        cert = builder.sign(self._key, _hash_for(self._key))
        return IssuedCert(
            certificate=cert,
            chain_pem=(_pem(cert), *self._chain_pem),
            root_pem=self.root_pem,
            serial=serial,
            not_after=cert.not_valid_after_utc,
            spiffe_id=spiffe_id,
        )
