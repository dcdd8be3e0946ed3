"""The mesh CA: root of trust, CSR signing into SPIFFE certificates, pod tokens,
join tokens, and the ``CertificateService`` gRPC handler served on the CA's TLS port (``port``).

Names load their module on first use (``lazy_exports``): an agent or a command
that needs one constant does not load the CA, its gRPC service and its stores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pilotfish.lazy_exports import LazyExports

if TYPE_CHECKING:
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

_EXPORTS = LazyExports(
    __name__,
    {
        "CONTROL_PLANE_DNS_NAME": "pilotfish.ca.authority",
        "CertificateAuthority": "pilotfish.ca.authority",
        "IssuedCert": "pilotfish.ca.authority",
        "KeyFileError": "pilotfish.ca.authority",
        "ServerKeyPair": "pilotfish.ca.authority",
        "CaError": "pilotfish.ca.errors",
        "IdentityMismatchError": "pilotfish.ca.errors",
        "InvalidRequestError": "pilotfish.ca.errors",
        "UnauthenticatedError": "pilotfish.ca.errors",
        "SpiffeId": "pilotfish.ca.identity",
        "JOIN_TOKEN_STORE_FILE": "pilotfish.ca.join_tokens",
        "JoinTokenRefused": "pilotfish.ca.join_tokens",
        "JoinTokens": "pilotfish.ca.join_tokens",
        "CA_METHOD": "pilotfish.ca.protocol",
        "CreateCertificateRequest": "pilotfish.ca.protocol",
        "CreateCertificateResponse": "pilotfish.ca.protocol",
        "ProtocolError": "pilotfish.ca.protocol",
        "IssuedRecord": "pilotfish.ca.records",
        "CertificateService": "pilotfish.ca.service",
        "MeshCa": "pilotfish.ca.service",
        "Owner": "pilotfish.ca.tokens",
        "TokenFileError": "pilotfish.ca.tokens",
        "TokenRegistry": "pilotfish.ca.tokens",
    },
)


def __getattr__(name: str) -> object:
    return _EXPORTS.load(name)
