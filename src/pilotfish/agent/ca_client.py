"""Client of the mesh CA: send a CSR and the pod's token, get a certificate chain.

The wire protocol is the mesh's fixed contract: the unary gRPC method
``/pilotfish.ca.v1.CertificateService/CreateCertificate`` carrying JSON bytes
(no ``.proto``). Request ``{"csr", "token", "ttl_seconds"?}``, response
``{"cert_chain": [...], "root_cert", "expires_at"}``. The channel is TLS: the
CA's server certificate is verified against the root from
``--root-cert-file`` and must carry the DNS name ``pilotfish-control-plane``
(the target-name override), whatever address is dialled.

The token file is read on every request, so a runtime that rewrites it
(atomically) never needs to restart the agent. The token is never logged.
When the token was a join token (a host joining the mesh), the answer carries
a ``renewal_token``: the join token is spent, so the client replaces the
token file with the renewal token (atomically, 0600) before returning, and
every later request presents it.

With several CA addresses (control-plane replicas sharing one root), the
client keeps one channel per address and sticks to the one that last
answered; a request that fails there for a reason another replica may not
share (UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN) is sent to the next address
at once, so a dead replica costs one failed attempt, not a back-off. A
refusal (bad token, wrong identity) is the same on every replica and is
not retried elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from pilotfish.agent.backoff import BackoffPolicy, restart_delay
from pilotfish.fsutil import atomic_write_text

__all__ = [
    "CA_METHOD",
    "CA_SERVER_NAME",
    "CaAuthError",
    "CaClient",
    "CaError",
    "CaResponse",
    "create_certificate_with_retry",
]

CA_METHOD = "/pilotfish.ca.v1.CertificateService/CreateCertificate"
# DNS SAN of the control plane's serving certificate (its CA and xDS mTLS ports).
CA_SERVER_NAME = "pilotfish-control-plane"

_RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN}
)
_AUTH = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})

_log = logging.getLogger("pilotfish.agent.ca")


class CaError(Exception):
    """The CA did not issue a certificate. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool, code: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


class CaAuthError(CaError):
    """The CA refused the token (UNAUTHENTICATED) or the identity (PERMISSION_DENIED)."""


@dataclass(frozen=True, slots=True)
class CaResponse:
    cert_chain: tuple[str, ...]
    root_cert: str
    expires_at: float
    renewal_token: str | None = field(default=None, repr=False)


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _decode_response(data: bytes) -> CaResponse:
    try:
        raw = json.loads(data)
        chain = raw["cert_chain"]
        if not isinstance(chain, list) or not all(isinstance(p, str) for p in chain):
            raise TypeError("cert_chain must be a list of PEM strings")
        renewal = raw.get("renewal_token")
        if renewal is not None and (not isinstance(renewal, str) or not renewal):
            raise TypeError("renewal_token must be a non-empty string")
        return CaResponse(
            tuple(chain), str(raw.get("root_cert", "")), float(raw["expires_at"]), renewal
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CaError(f"malformed CA response: {exc}", retryable=True) from exc


class CaClient:
    """TLS channels to the CA at ``targets`` (``HOST:PORT``, one or several replicas).

    Create, use and ``close()`` it inside one running event loop.
    """

    def __init__(
        self,
        targets: str | Sequence[str],
        root_cert_pem: bytes,
        token_file: Path,
        *,
        server_name: str = CA_SERVER_NAME,
        timeout: float = 10.0,
    ) -> None:
        self._token_file = token_file
        self._timeout = timeout
        self._targets = (targets,) if isinstance(targets, str) else tuple(targets)
        if not self._targets:
            raise ValueError("the CA client needs at least one address")
        credentials = grpc.ssl_channel_credentials(root_certificates=root_cert_pem)
        self._channels = [
            grpc.aio.secure_channel(
                target, credentials, options=[("grpc.ssl_target_name_override", server_name)]
            )
            for target in self._targets
        ]
        self._calls = [
            channel.unary_unary(
                CA_METHOD, request_serializer=_encode, response_deserializer=_decode_response
            )
            for channel in self._channels
        ]
        self._current = 0

    @property
    def target(self) -> str:
        """The address in use: the one that answered last (the first at start)."""
        return self._targets[self._current]

    @property
    def targets(self) -> tuple[str, ...]:
        return self._targets

    def _read_token(self) -> str:
        try:
            token = self._token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CaError(
                f"cannot read the CA token file {self._token_file}: {exc.strerror}",
                retryable=True,
            ) from exc
        if not token:
            raise CaError(f"the CA token file {self._token_file} is empty", retryable=True)
        return token

    async def create_certificate(self, csr_pem: str, ttl_seconds: int | None = None) -> CaResponse:
        """Send one CSR; raise ``CaAuthError`` / ``CaError`` with the CA's message on failure."""
        request: dict[str, Any] = {"csr": csr_pem, "token": self._read_token()}
        if ttl_seconds is not None:
            request["ttl_seconds"] = int(ttl_seconds)
        first = self._current
        for step in range(len(self._targets)):
            index = (first + step) % len(self._targets)
            try:
                response: CaResponse = await self._calls[index](request, timeout=self._timeout)
            except CaError as exc:
                error = exc  # malformed answer: another replica may answer well
            except grpc.aio.AioRpcError as exc:
                error = self._error(self._targets[index], exc)
                if not error.retryable:
                    raise error from exc
            else:
                if index != self._current:
                    _log.info("the CA at %s answered; using it from now on", self._targets[index])
                self._current = index
                if response.renewal_token is not None:
                    self._keep_renewal_token(response.renewal_token)
                return response
            if step + 1 < len(self._targets):
                _log.warning(
                    "%s; trying %s", error, self._targets[(index + 1) % len(self._targets)]
                )
        raise error

    def _keep_renewal_token(self, token: str) -> None:
        """The join token is spent: later requests present the renewal token."""
        atomic_write_text(self._token_file, token + "\n", mode=0o600)
        _log.info("joined: the CA token file %s now holds this workload's token", self._token_file)

    @staticmethod
    def _error(target: str, exc: grpc.aio.AioRpcError) -> CaError:
        code = exc.code()
        detail = exc.details() or code.name
        if code in _AUTH:
            return CaAuthError(
                f"the CA at {target} refused the request ({code.name}): {detail}",
                retryable=False,
                code=code.name,
            )
        return CaError(
            f"the CA at {target} failed ({code.name}): {detail}",
            retryable=code in _RETRYABLE,
            code=code.name,
        )

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


async def create_certificate_with_retry(
    client: CaClient,
    csr_pem: str,
    ttl_seconds: int | None,
    *,
    policy: BackoffPolicy,
    give_up_at: float | None = None,
    retry_all: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> CaResponse:
    """Call the CA until it answers; back off between attempts.

    Retries retryable failures (UNAVAILABLE and friends). With ``retry_all``
    every failure is retried (used while rotating: a token being re-registered
    must not cost the workload its identity). Raises the last ``CaError`` once
    an attempt fails after ``give_up_at`` (a ``clock()`` time), or at once for
    a non-retryable failure without ``retry_all``.
    """
    failures = 0
    while True:
        try:
            return await client.create_certificate(csr_pem, ttl_seconds)
        except CaError as exc:
            failures += 1
            if not (exc.retryable or retry_all):
                raise
            delay = restart_delay(policy, failures)
            if give_up_at is not None and clock() + delay > give_up_at:
                raise
            _log.warning("certificate request failed (retry in %.1fs): %s", delay, exc)
            await asyncio.sleep(delay)
