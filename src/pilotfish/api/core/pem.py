"""Reading PEM certificates that users put in Secrets.

``cryptography`` parses some certificates that RFC 5280 disallows (a serial
number that is zero or negative) and only emits a deprecation warning, which
says nothing to the user and will become an exception in a later release.
Here the warning is caught and returned as a plain reason, so that validation
can tell the user which key holds such a certificate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

__all__ = ["ParsedCertificates", "load_certificates"]


@dataclass(frozen=True)
class ParsedCertificates:
    """The certificates of one PEM bundle, and their departures from RFC 5280."""

    certificates: list[x509.Certificate]
    #: Indexes (from 0) of certificates whose serial number is not positive.
    nonpositive_serials: tuple[int, ...]


def load_certificates(data: bytes) -> ParsedCertificates:
    """Parse a PEM bundle; raises ValueError when it holds no readable certificate."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        certs = x509.load_pem_x509_certificates(data)
        bad = tuple(i for i, cert in enumerate(certs) if cert.serial_number <= 0)
    return ParsedCertificates(certs, bad)
