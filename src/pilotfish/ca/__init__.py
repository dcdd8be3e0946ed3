"""The mesh CA: root of trust, CSR signing into SPIFFE certificates, pod tokens,
join tokens, and the ``CertificateService`` gRPC handler served on the CA's TLS port (``port``)."""

from __future__ import annotations

from pilotfish.ca.authority import (
    CONTROL_PLANE_DNS_NAME,
    CertificateAuthority,
    IssuedCert,
    KeyFileError,
    ServerKeyPair,
)
from pilotfish.ca.errors import (
    CaError,
    IdentityMismatchError,
    InvalidRequestError,
    UnauthenticatedError,
)
from pilotfish.ca.identity import SpiffeId
from pilotfish.ca.join_tokens import JOIN_TOKEN_STORE_FILE, JoinTokenRefused, JoinTokens
from pilotfish.ca.protocol import (
    CA_METHOD,
    CreateCertificateRequest,
    CreateCertificateResponse,
    ProtocolError,
)
from pilotfish.ca.records import IssuedRecord
from pilotfish.ca.service import CertificateService, MeshCa
from pilotfish.ca.tokens import Owner, TokenFileError, TokenRegistry

__all__ = [
    "CA_METHOD",
    "CONTROL_PLANE_DNS_NAME",
    "JOIN_TOKEN_STORE_FILE",
    "CaError",
    "CertificateAuthority",
    "CertificateService",
    "CreateCertificateRequest",
    "CreateCertificateResponse",
    "IdentityMismatchError",
    "InvalidRequestError",
    "IssuedCert",
    "IssuedRecord",
    "JoinTokenRefused",
    "JoinTokens",
    "KeyFileError",
    "MeshCa",
    "Owner",
    "ProtocolError",
    "ServerKeyPair",
    "SpiffeId",
    "TokenFileError",
    "TokenRegistry",
    "UnauthenticatedError",
]
