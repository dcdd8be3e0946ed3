"""When certificates are renewed, with a fake clock: the schedule and the retries."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from pilotfish.agent.backoff import BackoffPolicy
from pilotfish.agent.ca_client import CaAuthError, CaError
from pilotfish.agent.identity import WorkloadCertificate
from pilotfish.agent.rotation import (
    CertificateRotator,
    RotationPolicy,
    renewal_time,
    retry_delay,
)

POLICY = RotationPolicy()


def test_renewal_is_at_half_the_lifetime_without_jitter() -> None:
    assert renewal_time(1000.0, 1100.0, POLICY, jitter=0.5) == pytest.approx(1050.0)


def test_jitter_stays_within_five_percent_of_the_lifetime() -> None:
    times = [renewal_time(0.0, 1000.0, POLICY, jitter=j / 100) for j in range(100)]
    assert min(times) == pytest.approx(450.0)
    assert max(times) < 550.0
    assert len(set(times)) == 100


def test_renewal_is_never_later_than_eighty_percent() -> None:
    late = RotationPolicy(renew_fraction=0.78, jitter_fraction=0.1)
    assert renewal_time(0.0, 100.0, late, jitter=0.99) == pytest.approx(80.0)


def test_zero_or_negative_lifetime_renews_at_once() -> None:
    assert renewal_time(500.0, 500.0, POLICY, 0.5) == 500.0
    assert renewal_time(500.0, 400.0, POLICY, 0.5) == 500.0


def test_retry_delay_backs_off_but_leaves_room_before_expiry() -> None:
    policy = RotationPolicy(retry=BackoffPolicy(initial=1.0, factor=2.0, maximum=30.0))
    far = [retry_delay(policy, n, now=0.0, not_after=10_000.0) for n in range(1, 7)]
    assert far == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    # 20 s left: never more than a quarter of it.
    assert retry_delay(policy, 6, now=0.0, not_after=20.0) == 5.0
    # Already expired: the plain back-off (a CA that is down is not hammered).
    assert retry_delay(policy, 6, now=30.0, not_after=20.0) == 30.0
    assert retry_delay(policy, 1, now=30.0, not_after=20.0) == 1.0


def _cert(serial: int, issued_at: float, lifetime: float) -> WorkloadCertificate:
    return WorkloadCertificate(
        spiffe_id="spiffe://cluster.local/ns/a/sa/b",
        cert_chain_pem="chain",
        root_cert_pem="root",
        serial=serial,
        not_before=issued_at - 60.0,  # back-dated by the CA: must not pull renewal forward
        not_after=issued_at + lifetime,
        issued_at=issued_at,
        private_key_pem=b"key",
    )


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def _run_until(
    rotator: CertificateRotator, first: WorkloadCertificate, done: asyncio.Event
) -> None:
    task = asyncio.create_task(rotator.run(first))
    try:
        async with asyncio.timeout(5):
            await done.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_rotator_renews_each_certificate_at_half_its_lifetime() -> None:
    fake = FakeTime()
    serials = itertools.count(2)
    pushed: list[tuple[float, int]] = []
    done = asyncio.Event()

    async def issue() -> WorkloadCertificate:
        return _cert(next(serials), fake.now, 100.0)

    def on_certificate(cert: WorkloadCertificate) -> None:
        pushed.append((fake.now, cert.serial))
        if len(pushed) == 3:
            done.set()

    rotator = CertificateRotator(
        issue, on_certificate, clock=fake.clock, rand=lambda: 0.5, sleep=fake.sleep
    )
    await _run_until(rotator, _cert(1, 0.0, 100.0), done)
    assert pushed == [(50.0, 2), (100.0, 3), (150.0, 4)]
    assert rotator.rotations == 3


async def test_rotator_retries_failures_until_the_ca_answers() -> None:
    fake = FakeTime()
    outcomes: list[Exception | None] = [
        CaError("down", retryable=True),
        CaAuthError("token not yet registered", retryable=False),
        None,
    ]
    pushed: list[WorkloadCertificate] = []
    done = asyncio.Event()

    async def issue() -> WorkloadCertificate:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return _cert(7, fake.now, 100.0)

    def on_certificate(cert: WorkloadCertificate) -> None:
        pushed.append(cert)
        done.set()

    policy = RotationPolicy(retry=BackoffPolicy(initial=1.0, factor=2.0, maximum=30.0))
    rotator = CertificateRotator(
        issue, on_certificate, policy=policy, clock=fake.clock, rand=lambda: 0.5, sleep=fake.sleep
    )
    await _run_until(rotator, _cert(1, 0.0, 100.0), done)
    assert [c.serial for c in pushed] == [7]
    assert fake.sleeps[:3] == [50.0, 1.0, 2.0]
    assert rotator.failures == 2
