"""Semantic checks of a Kubernetes Secret.

Every message names a key, never a value: diagnostics are logged, returned by
the REST API and printed by the CLI, and a Secret's values must not appear
anywhere. Errors from the ``cryptography`` library are therefore summarised,
not passed on.
"""

from __future__ import annotations

import datetime
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from pilotfish.api.core.pem import load_certificates
from pilotfish.api.core.secret import REDACTED, SECRET_TYPE_TLS, SecretSpec, decode_base64
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.validation.findings import Findings
from pilotfish.api.yamlnodes import join_key

__all__ = ["validate"]

# Kubernetes: keys consist of alphanumerics, '-', '_' or '.', at most 253 characters.
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
CA_CERT = "ca.crt"


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, SecretSpec)
    f = Findings(resource)
    values: dict[str, bytes] = {}
    where: dict[str, str] = {}  # key -> field path of the entry that provides it
    for key, value in spec.data.items():
        path = join_key("data", key)
        _check_key(f, key, path)
        where[key] = path
        if _check_not_redacted(f, key, value, path):
            continue
        try:
            values[key] = decode_base64(value)
        except ValueError as exc:
            f.error(path, f"value of key {key!r} {exc}")
    for key, text in spec.string_data.items():
        path = join_key("stringData", key)
        _check_key(f, key, path)
        where[key] = path  # stringData wins over data, as in Kubernetes
        _check_not_redacted(f, key, text, path)
        values[key] = text.encode("utf-8")
    if spec.type == SECRET_TYPE_TLS:
        _check_tls(f, values, where)
    return f.items


def _check_not_redacted(f: Findings, key: str, value: str, path: str) -> bool:
    """Refuse the placeholder that reads return: applying a Secret read back from
    the API would otherwise replace its real values with the placeholder."""
    if value.strip() != REDACTED:
        return False
    f.error(
        path,
        f"value of key {key!r} is the {REDACTED!r} placeholder shown by reads; "
        "supply the real value",
    )
    return True


def _check_key(f: Findings, key: str, path: str) -> None:
    if not key or len(key) > 253 or not _KEY.match(key) or key in (".", ".."):
        f.error(
            path,
            f"invalid key {key!r}: keys consist of letters, digits, '-', '_' or '.' "
            "(at most 253 characters)",
        )


def _check_tls(f: Findings, values: dict[str, bytes], where: dict[str, str]) -> None:
    """``tls.crt`` and ``tls.key`` present, parseable, and belonging together;
    ``ca.crt`` parseable when present."""
    missing = [k for k in (TLS_CERT, TLS_KEY) if k not in where]
    for name in missing:
        f.error("data", f"a {SECRET_TYPE_TLS} Secret needs key {name!r}")
    certs = _certificates(f, values, where, TLS_CERT) if TLS_CERT in values else None
    key = _private_key(f, values[TLS_KEY], where[TLS_KEY]) if TLS_KEY in values else None
    if CA_CERT in values:
        _certificates(f, values, where, CA_CERT)
    if certs and key is not None:
        try:  # the certificate parses lazily: a damaged key shows only here
            leaf = (
                certs[0]
                .public_key()
                .public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        except ValueError as exc:
            f.error(where[TLS_CERT], f"the public key in {TLS_CERT!r} cannot be read: {exc}")
            return
        mine = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if leaf != mine:
            f.error(where[TLS_KEY], f"{TLS_KEY!r} does not match the certificate in {TLS_CERT!r}")


def _certificates(
    f: Findings, values: dict[str, bytes], where: dict[str, str], key: str
) -> list[x509.Certificate] | None:
    path = where[key]
    try:
        parsed = load_certificates(values[key])
    except ValueError:
        f.error(path, f"{key!r} is not a PEM certificate (chain)")
        return None
    certs = parsed.certificates
    now = datetime.datetime.now(datetime.UTC)
    for i, cert in enumerate(certs):
        which = "certificate" if len(certs) == 1 else f"certificate {i + 1}"
        if cert.not_valid_after_utc < now:
            expiry = cert.not_valid_after_utc.isoformat()
            f.warning(path, f"{which} in {key!r} expired at {expiry}")
        if i in parsed.nonpositive_serials:
            # RFC 5280 4.1.2.2: TLS libraries may refuse such a certificate.
            f.warning(
                path,
                f"{which} in {key!r} has a serial number that is not positive, "
                "which RFC 5280 disallows; TLS peers may refuse it",
            )
    return certs


def _private_key(f: Findings, data: bytes, path: str) -> PrivateKeyTypes | None:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: the key is encrypted. The library's reason is not passed on,
        # so that nothing about the key material can reach a message.
        f.error(path, f"{TLS_KEY!r} is not an unencrypted PEM private key")
        return None
