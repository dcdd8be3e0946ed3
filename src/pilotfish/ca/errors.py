"""Why the CA refuses a request; each error maps to one gRPC status code."""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CaError",
    "IdentityMismatchError",
    "InvalidRequestError",
    "UnauthenticatedError",
]


class CaError(Exception):
    """Base of the CA's refusals. ``status`` is the gRPC status code name,
    ``reason`` the ``pilotfish_ca_certificates_rejected_total`` label value."""

    status: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnauthenticatedError(CaError):
    """Missing or unknown token (UNAUTHENTICATED)."""

    status = "UNAUTHENTICATED"


class IdentityMismatchError(CaError):
    """The CSR asks for an identity the caller does not own (PERMISSION_DENIED)."""

    status = "PERMISSION_DENIED"


class InvalidRequestError(CaError):
    """Malformed request or CSR, bad signature, weak key (INVALID_ARGUMENT)."""

    status = "INVALID_ARGUMENT"
