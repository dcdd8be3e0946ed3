"""Getting the workload certificate and keeping it fresh.

Theory of operation: ``CertificateIssuer.issue()`` makes a new P-256 key and a
CSR for the workload's SPIFFE id, sends them with the pod's token to the CA and
checks the answer (``identity.certificate_from_response``). Every certificate
gets a fresh key.

``CertificateRotator.run()`` sleeps until ``renewal_time()`` (about half the
certificate's lifetime, with a little jitter so that pods started together do
not all renew together, and never later than 80 % of it), issues a new
certificate and hands it to ``on_certificate`` (the SDS server pushes it to
Envoy, which uses it for new connections; existing connections keep their
already-verified session). A failed renewal is retried with back-off, every
failure included (a token being re-registered must not cost the workload its
identity), for as long as it takes; the delays are capped so that several
attempts fit before the current certificate expires.

Times are wall-clock Unix seconds because certificate validity is; the clock,
the random source and the sleep function are injectable for tests.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pilotfish.agent.backoff import BackoffPolicy, restart_delay
from pilotfish.agent.ca_client import CaClient, CaError, create_certificate_with_retry
from pilotfish.agent.identity import (
    IdentityError,
    WorkloadCertificate,
    WorkloadKey,
    build_csr,
    certificate_from_response,
)

__all__ = [
    "CertificateIssuer",
    "CertificateRotator",
    "RotationPolicy",
    "renewal_time",
    "retry_delay",
]

_log = logging.getLogger("pilotfish.agent.rotation")


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """When to renew: at ``renew_fraction`` of the lifetime, +/- ``jitter_fraction``,
    never after ``latest_fraction``; failed attempts back off per ``retry``."""

    renew_fraction: float = 0.5
    jitter_fraction: float = 0.05
    latest_fraction: float = 0.8
    retry: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(0.5, 2.0, 30.0))


def renewal_time(
    not_before: float, not_after: float, policy: RotationPolicy, jitter: float
) -> float:
    """When to renew a certificate valid from ``not_before`` to ``not_after`` (pure).

    Callers pass the time the certificate was received as ``not_before``: CAs
    back-date the real ``notBefore``, which would otherwise pull renewal forward.

    ``jitter`` is a number in [0, 1) (e.g. ``random.random()``); it moves the
    time within +/- ``jitter_fraction`` of the lifetime around
    ``renew_fraction``. The result is never later than ``latest_fraction`` of
    the lifetime nor earlier than ``not_before``.
    """
    lifetime = max(0.0, not_after - not_before)
    fraction = policy.renew_fraction + policy.jitter_fraction * (2.0 * jitter - 1.0)
    fraction = min(max(fraction, 0.0), policy.latest_fraction)
    return not_before + lifetime * fraction


def retry_delay(policy: RotationPolicy, failures: int, now: float, not_after: float) -> float:
    """Back-off before the next renewal attempt after ``failures`` failures (pure).

    The usual doubling back-off, but never more than a quarter of the time left
    before expiry (so a few attempts still fit), and at least the initial delay.
    Once expired, the plain back-off applies, so a CA that is down is not hammered.
    """
    delay = restart_delay(policy.retry, failures)
    remaining = not_after - now
    if remaining > 0:
        delay = min(delay, remaining / 4.0)
    return max(delay, policy.retry.initial)


class CertificateIssuer:
    """Obtains certificates for one SPIFFE id from the CA; see the module docstring."""

    def __init__(
        self,
        client: CaClient,
        identity: str,
        *,
        ttl_seconds: int | None = None,
        retry: BackoffPolicy | None = None,
        fallback_root_pem: str = "",
    ) -> None:
        """``fallback_root_pem`` is served as the mesh root when the CA's answer has none."""
        self._fallback_root = fallback_root_pem
        self._client = client
        self._identity = identity
        self._ttl = ttl_seconds
        self._retry = retry or BackoffPolicy(0.5, 2.0, 10.0)

    @property
    def identity(self) -> str:
        return self._identity

    async def issue(self, *, retry: bool = True) -> WorkloadCertificate:
        """One certificate with a fresh key.

        With ``retry`` the CA is called until it answers, retrying only
        failures that may pass (UNAVAILABLE and the like); a refused token or
        identity raises ``CaAuthError`` at once. Raises ``CaError`` or
        ``IdentityError`` (the CA's answer does not match the request).
        """
        key = WorkloadKey.generate()
        csr = build_csr(key, self._identity)
        if retry:
            response = await create_certificate_with_retry(
                self._client, csr, self._ttl, policy=self._retry
            )
        else:
            response = await self._client.create_certificate(csr, self._ttl)
        root = response.root_cert or self._fallback_root
        return certificate_from_response(key, self._identity, response.cert_chain, root)


class CertificateRotator:
    """Renews the certificate before it expires, forever; see the module docstring."""

    def __init__(
        self,
        issue: Callable[[], Awaitable[WorkloadCertificate]],
        on_certificate: Callable[[WorkloadCertificate], None],
        *,
        policy: RotationPolicy | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._issue = issue
        self._on_certificate = on_certificate
        self._policy = policy or RotationPolicy()
        self._clock = clock
        self._rand = rand
        self._sleep = sleep
        self.rotations = 0
        self.failures = 0

    async def run(self, current: WorkloadCertificate) -> None:
        """Renew ``current`` and each of its successors at their renewal time. Never returns."""
        while True:
            due = renewal_time(current.issued_at, current.not_after, self._policy, self._rand())
            await self._sleep(max(0.0, due - self._clock()))
            current = await self._renew(current)

    async def _renew(self, current: WorkloadCertificate) -> WorkloadCertificate:
        failures = 0
        while True:
            try:
                fresh = await self._issue()
            except (CaError, IdentityError) as exc:
                failures += 1
                self.failures += 1
                now = self._clock()
                delay = retry_delay(self._policy, failures, now, current.not_after)
                expired = now >= current.not_after
                _log.log(
                    logging.ERROR if expired else logging.WARNING,
                    "renewing %s failed%s (retry in %.1fs): %s",
                    current.spiffe_id,
                    " and the current certificate has expired" if expired else "",
                    delay,
                    exc,
                )
                await self._sleep(delay)
                continue
            self.rotations += 1
            self._on_certificate(fresh)
            _log.info(
                "rotated certificate for %s: serial %s, valid until %s",
                fresh.spiffe_id,
                fresh.serial_hex,
                fresh.summary()["not_after_iso"],
            )
            return fresh
