"""Restart back-off for a supervised process, as pure functions.

A process that keeps dying is restarted after 0.2 s, 0.4 s, 0.8 s, ... up to
10 s between attempts. A run that stayed up for ``reset_after`` seconds counts
as healthy, so its death starts the sequence again from the first delay.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BackoffPolicy", "failures_after_exit", "restart_delay"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial: float = 0.2
    factor: float = 2.0
    maximum: float = 10.0
    reset_after: float = 30.0


def restart_delay(policy: BackoffPolicy, failures: int) -> float:
    """Seconds to wait before the restart that follows ``failures`` consecutive deaths (>= 1)."""
    if failures < 1:
        return 0.0
    # Cap the exponent so huge failure counts cannot overflow a float.
    exponent = min(failures - 1, 64)
    return float(min(policy.maximum, policy.initial * policy.factor**exponent))


def failures_after_exit(policy: BackoffPolicy, failures: int, uptime: float) -> int:
    """Consecutive-failure count after a run of ``uptime`` seconds ended unexpectedly."""
    return 1 if uptime >= policy.reset_after else failures + 1
