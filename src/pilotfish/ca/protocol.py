"""The CA wire contract: one gRPC method whose payloads are JSON documents.

Method ``/pilotfish.ca.v1.CertificateService/CreateCertificate`` (unary).
Request ``{"csr": "<PEM>", "token": "<pod token>", "ttl_seconds": N}``
(``ttl_seconds`` optional); response ``{"cert_chain": ["<leaf PEM>", ...],
"root_cert": "<PEM>", "expires_at": <unix seconds>, "renewal_token": "..."}``.
``renewal_token`` is present only when the request's token was a join token
(``join_tokens``): the join token is spent, and the caller presents the new
per-workload token for every later request. Older clients ignore the field.
Errors are gRPC status codes: UNAUTHENTICATED (missing/unknown token, join
token used or expired), PERMISSION_DENIED (the CSR's identity is not the
token's), INVALID_ARGUMENT (malformed request or CSR, bad signature, weak key).
Served only over TLS on the control plane's secure port.

``encode``/``decode`` are usable directly as gRPC (de)serializers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CA_METHOD",
    "CA_METHOD_NAME",
    "CA_SERVICE",
    "CreateCertificateRequest",
    "CreateCertificateResponse",
    "ProtocolError",
]

CA_SERVICE = "pilotfish.ca.v1.CertificateService"
CA_METHOD_NAME = "CreateCertificate"
CA_METHOD = f"/{CA_SERVICE}/{CA_METHOD_NAME}"

_MAX_PAYLOAD = 64 * 1024  # a CSR is ~1 KiB; refuse anything absurd before parsing


class ProtocolError(ValueError):
    """A payload is not a valid message of this protocol."""


def _load(data: bytes) -> dict[str, Any]:
    if len(data) > _MAX_PAYLOAD:
        raise ProtocolError(f"message too large ({len(data)} bytes)")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"message is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ProtocolError("message must be a JSON object")
    return doc


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")


@dataclass(frozen=True, slots=True)
class CreateCertificateRequest:
    csr: str
    token: str = field(repr=False)  # a credential: never in a repr or log line
    ttl_seconds: int | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"csr": self.csr, "token": self.token}
        if self.ttl_seconds is not None:
            doc["ttl_seconds"] = self.ttl_seconds
        return _dump(doc)

    @classmethod
    def decode(cls, data: bytes) -> CreateCertificateRequest:
        doc = _load(data)
        csr = doc.get("csr")
        if not isinstance(csr, str) or not csr.strip():
            raise ProtocolError("'csr' must be a non-empty PEM string")
        token = doc.get("token", "")
        if not isinstance(token, str):
            raise ProtocolError("'token' must be a string")
        ttl = doc.get("ttl_seconds")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
            raise ProtocolError("'ttl_seconds' must be a positive integer")
        return cls(csr=csr, token=token, ttl_seconds=ttl)


@dataclass(frozen=True, slots=True)
class CreateCertificateResponse:
    cert_chain: tuple[str, ...]  # leaf first, then intermediates (not the root)
    root_cert: str
    expires_at: int  # the leaf's notAfter, unix seconds
    # The caller's token for later requests, after a join token (a credential).
    renewal_token: str | None = field(default=None, repr=False)

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "cert_chain": list(self.cert_chain),
            "root_cert": self.root_cert,
            "expires_at": self.expires_at,
        }
        if self.renewal_token is not None:
            doc["renewal_token"] = self.renewal_token
        return _dump(doc)

    @classmethod
    def decode(cls, data: bytes) -> CreateCertificateResponse:
        doc = _load(data)
        chain = doc.get("cert_chain")
        if (
            not isinstance(chain, list)
            or not chain
            or not all(isinstance(c, str) and c for c in chain)
        ):
            raise ProtocolError("'cert_chain' must be a non-empty list of PEM strings")
        root = doc.get("root_cert")
        if not isinstance(root, str) or not root:
            raise ProtocolError("'root_cert' must be a PEM string")
        expires = doc.get("expires_at")
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise ProtocolError("'expires_at' must be an integer (unix seconds)")
        renewal = doc.get("renewal_token")
        if renewal is not None and (not isinstance(renewal, str) or not renewal):
            raise ProtocolError("'renewal_token' must be a non-empty string")
        return cls(
            cert_chain=tuple(chain), root_cert=root, expires_at=expires, renewal_token=renewal
        )
