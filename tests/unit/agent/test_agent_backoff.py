"""Restart back-off: doubling from 0.2 s, capped at 10 s, reset after a healthy run."""

from __future__ import annotations

import pytest

from pilotfish.agent.backoff import BackoffPolicy, failures_after_exit, restart_delay

POLICY = BackoffPolicy()


def test_delays_double_from_the_initial_delay_up_to_the_cap() -> None:
    delays = [restart_delay(POLICY, n) for n in range(1, 10)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])


def test_huge_failure_counts_stay_at_the_cap() -> None:
    assert restart_delay(POLICY, 10_000) == 10.0


def test_no_failure_means_no_delay() -> None:
    assert restart_delay(POLICY, 0) == 0.0


def test_quick_deaths_accumulate() -> None:
    failures = 0
    for _ in range(4):
        failures = failures_after_exit(POLICY, failures, uptime=0.5)
    assert failures == 4
    assert restart_delay(POLICY, failures) == pytest.approx(1.6)


def test_a_run_longer_than_reset_after_starts_again_from_the_first_delay() -> None:
    assert failures_after_exit(POLICY, 7, uptime=30.0) == 1
    assert failures_after_exit(POLICY, 7, uptime=29.9) == 8
    assert restart_delay(POLICY, failures_after_exit(POLICY, 7, uptime=45.0)) == 0.2


def test_custom_policy() -> None:
    policy = BackoffPolicy(initial=1.0, factor=3.0, maximum=5.0, reset_after=2.0)
    assert [restart_delay(policy, n) for n in (1, 2, 3)] == [1.0, 3.0, 5.0]
    assert failures_after_exit(policy, 3, uptime=2.0) == 1
