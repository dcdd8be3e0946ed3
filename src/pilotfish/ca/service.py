"""The CertificateService gRPC handler and the ``MeshCa`` bundle the control plane exposes.

A request is decoded from JSON, its token looked up (UNAUTHENTICATED when
missing or unknown), and the CSR signed for the token owner's SPIFFE id
(PERMISSION_DENIED when the CSR asks for another identity, INVALID_ARGUMENT
for anything malformed or weak).

A join token (``join_tokens``) is accepted once: its grant is checked, the CSR
signed for the granted identity, and only then is the token consumed
(atomically; a request that loses a race is refused as a used token), so a
refused CSR does not spend it. The answer carries a fresh per-workload token,
registered like a pod token, for the workload's renewals.

The handler is served on the CA's TLS port only (``port``), so tokens and
keys' proofs never cross a plain-text connection. Signing one EC certificate
takes well under a millisecond, so it runs on the event loop.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from collections.abc import Callable

import grpc
from prometheus_client import CollectorRegistry

from pilotfish.ca.authority import CertificateAuthority, IssuedCert
from pilotfish.ca.errors import CaError, InvalidRequestError, UnauthenticatedError
from pilotfish.ca.identity import SpiffeId
from pilotfish.ca.join_tokens import JoinGrant, JoinTokenRefused, JoinTokens
from pilotfish.ca.metrics import CaMetrics
from pilotfish.ca.protocol import (
    CA_METHOD_NAME,
    CA_SERVICE,
    CreateCertificateRequest,
    CreateCertificateResponse,
    ProtocolError,
)
from pilotfish.ca.records import IssuedRecord, IssuedRecords
from pilotfish.ca.tokens import Owner, TokenRegistry

__all__ = ["CertificateService", "MeshCa"]

_log = logging.getLogger("pilotfish.ca")


def _passthrough(data: bytes) -> bytes:
    return data


class CertificateService:
    """Turns CreateCertificate requests into signed certificates.

    ``default_ttl`` is used when a request names no TTL; a request may ask for
    a shorter TTL but never a longer one.
    """

    def __init__(
        self,
        authority: CertificateAuthority,
        tokens: TokenRegistry,
        records: IssuedRecords,
        metrics: CaMetrics,
        *,
        join_tokens: JoinTokens | None = None,
        default_ttl: datetime.timedelta = datetime.timedelta(hours=24),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.authority = authority
        self.tokens = tokens
        self.join_tokens = join_tokens if join_tokens is not None else JoinTokens()
        self.records = records
        self.metrics = metrics
        self.default_ttl = default_ttl
        self._clock = clock

    def create_certificate(self, request: CreateCertificateRequest) -> CreateCertificateResponse:
        """Authenticate, sign and record. Raises ``CaError`` subclasses on refusal
        (and counts them); the gRPC adapter maps those to status codes."""
        renewal: str | None = None
        try:
            owner = self.tokens.lookup(request.token)
            grant = self._join_grant(request.token) if owner is None else None
            if grant is not None:
                owner = grant.owner(_joined_owner_id(grant))
            if owner is None:
                raise UnauthenticatedError(
                    "missing or unknown token" if request.token else "request carries no token",
                    "unauthenticated",
                )
            issued = self.authority.sign_csr(request.csr, self._identity(owner), self._ttl(request))
            if grant is not None:
                renewal = self._redeem(request.token, owner)
        except CaError as exc:
            self.metrics.rejected.labels(reason=exc.reason).inc()
            raise
        self._record(owner, issued)
        self.metrics.issued.inc()
        return CreateCertificateResponse(
            cert_chain=issued.chain_pem,
            root_cert=issued.root_pem,
            expires_at=issued.expires_at,
            renewal_token=renewal,
        )

    def _join_grant(self, token: str) -> JoinGrant | None:
        """The grant of an unspent join token (None: not a join token)."""
        try:
            return self.join_tokens.check(token)
        except JoinTokenRefused as exc:
            raise UnauthenticatedError(str(exc), exc.reason) from exc

    def _redeem(self, token: str, owner: Owner) -> str:
        """Spend the join token (after signing: a refused CSR does not spend it) and
        register the workload's renewal token."""
        try:
            self.join_tokens.consume(token)
        except JoinTokenRefused as exc:  # another request won the race
            raise UnauthenticatedError(str(exc), exc.reason) from exc
        except KeyError as exc:  # forgotten meanwhile (expired long ago)
            raise UnauthenticatedError("missing or unknown token", "unauthenticated") from exc
        _log.info(
            "join token used by %s (%s/%s)", owner.pod, owner.namespace, owner.service_account
        )
        return self.tokens.register(owner.namespace, owner.service_account, owner.pod)

    def _identity(self, owner: Owner) -> SpiffeId:
        return owner.identity(self.authority.trust_domain)

    def _ttl(self, request: CreateCertificateRequest) -> datetime.timedelta:
        if request.ttl_seconds is None:
            return self.default_ttl
        return min(datetime.timedelta(seconds=request.ttl_seconds), self.default_ttl)

    def _record(self, owner: Owner, issued: IssuedCert) -> None:
        record = IssuedRecord(
            pod=owner.pod,
            namespace=owner.namespace,
            service_account=owner.service_account,
            spiffe_id=issued.spiffe_id,
            serial=format(issued.serial, "x"),
            not_after=issued.not_after.timestamp(),
            issued_at=self._clock(),
        )
        self.records.add(record)
        _log.info(
            "issued %s to pod %s (serial %s, expires %s)",
            record.spiffe_id,
            owner.pod or "-",
            record.serial,
            issued.not_after.isoformat(timespec="seconds"),
        )

    # -- gRPC adapter ------------------------------------------------------------------

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler for ``/pilotfish.ca.v1.CertificateService/CreateCertificate``."""
        method = grpc.unary_unary_rpc_method_handler(
            self._grpc_create_certificate,
            request_deserializer=_passthrough,
            response_serializer=CreateCertificateResponse.encode,
        )
        return grpc.method_handlers_generic_handler(CA_SERVICE, {CA_METHOD_NAME: method})

    async def _grpc_create_certificate(
        self, data: bytes, context: grpc.aio.ServicerContext[bytes, CreateCertificateResponse]
    ) -> CreateCertificateResponse:
        try:
            try:
                request = CreateCertificateRequest.decode(data)
            except ProtocolError as exc:
                self.metrics.rejected.labels(reason="bad_request").inc()
                raise InvalidRequestError(f"bad request: {exc}", "bad_request") from exc
            return self.create_certificate(request)
        except CaError as exc:
            _log.warning("certificate request from %s refused: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode[exc.status], str(exc))
            raise AssertionError("unreachable: abort raises") from exc


def _joined_owner_id(grant: JoinGrant) -> str:
    """A new owner id for a workload that joins (``<group or sa>-<random>.<namespace>``)."""
    base = grant.workload_group or grant.service_account
    return f"{base}-{secrets.token_hex(4)}.{grant.namespace}"


class MeshCa:
    """The control plane's CA: authority, tokens, issued records, metrics and the service."""

    def __init__(
        self,
        authority: CertificateAuthority,
        registry: CollectorRegistry,
        *,
        tokens: TokenRegistry | None = None,
        join_tokens: JoinTokens | None = None,
        default_ttl: datetime.timedelta = datetime.timedelta(hours=24),
    ) -> None:
        self.authority = authority
        self.tokens = tokens if tokens is not None else TokenRegistry()
        self.join_tokens = join_tokens if join_tokens is not None else JoinTokens()
        self.records = IssuedRecords()
        self.metrics = CaMetrics(registry, self.records)
        self.service = CertificateService(
            authority,
            self.tokens,
            self.records,
            self.metrics,
            join_tokens=self.join_tokens,
            default_ttl=default_ttl,
        )

    @property
    def trust_domain(self) -> str:
        return self.authority.trust_domain

    @property
    def root_pem(self) -> str:
        return self.authority.root_pem

    def issued(self) -> list[IssuedRecord]:
        """The newest certificate per pod (see ``IssuedRecords.issued``)."""
        return self.records.issued()

    def forget_pod(self, pod: str) -> None:
        """A pod is gone: revoke its tokens and drop its record."""
        self.tokens.revoke(pod)
        self.records.forget(pod)
