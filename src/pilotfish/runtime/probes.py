"""Readiness probing of one app run, as a small clock-driven state machine.

Theory of operation (Kubernetes' readiness semantics):

- A run starts un-ready. The first probe is due ``initial_delay_seconds``
  after the app started, later ones every ``period_seconds`` after the
  previous probe began.
- ``success_threshold`` consecutive successes make the run ready;
  ``failure_threshold`` consecutive failures make it un-ready again. A single
  result never flips the state unless its threshold is 1.
- Nothing here does I/O or reads a clock: callers pass ``now`` and report
  each result, so the whole machine is tested with a fake clock. A restarted
  app gets a fresh ``ProbeTracker``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pilotfish.runtime.pod_spec import ProbeSpec

__all__ = ["ProbeState", "ProbeTracker", "observe"]


@dataclass(frozen=True, slots=True)
class ProbeState:
    """Readiness and the current run of equal results (only one counter is non-zero)."""

    ready: bool = False
    successes: int = 0
    failures: int = 0


def observe(state: ProbeState, ok: bool, probe: ProbeSpec) -> ProbeState:
    """The state after one probe result."""
    if ok:
        successes = state.successes + 1
        ready = state.ready or successes >= probe.success_threshold
        return replace(state, ready=ready, successes=successes, failures=0)
    failures = state.failures + 1
    ready = state.ready and failures < probe.failure_threshold
    return replace(state, ready=ready, successes=0, failures=failures)


class ProbeTracker:
    """Schedules the probes of one app run and keeps its ``ProbeState``."""

    def __init__(self, probe: ProbeSpec, started_at: float) -> None:
        self.probe = probe
        self.state = ProbeState()
        self._next_due = started_at + probe.initial_delay_seconds

    @property
    def ready(self) -> bool:
        return self.state.ready

    @property
    def next_due(self) -> float:
        """Clock time at which the next probe should start."""
        return self._next_due

    def due(self, now: float) -> bool:
        return now >= self._next_due

    def resume(self, ok: bool, probed_at: float) -> None:
        """Start tracking a run adopted from an earlier supervisor with one probe result.

        The run was already being probed: a passing probe carries its readiness
        over at once (no new ``success_threshold`` run, which would pull a
        serving pod out of its Service), a failing one counts as a first failure.
        """
        if ok:
            self.state = ProbeState(ready=True, successes=self.probe.success_threshold)
        else:
            self.state = observe(ProbeState(), False, self.probe)
        self._next_due = probed_at + self.probe.period_seconds

    def record(self, ok: bool, probed_at: float) -> bool:
        """Record the result of the probe started at ``probed_at``; True if readiness changed."""
        before = self.state.ready
        self.state = observe(self.state, ok, self.probe)
        # Periods are counted from the start of a probe, as kubelet does, but a
        # slow probe never makes the next one due in the past.
        self._next_due = max(probed_at + self.probe.period_seconds, self._next_due)
        return self.state.ready != before
