"""The readiness probe state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from pilotfish.runtime.pod_spec import PodSpecError, ProbeSpec
from pilotfish.runtime.probes import ProbeState, ProbeTracker, observe


def _probe(**kw: float) -> ProbeSpec:
    return ProbeSpec("http", 8080, "/ready", **kw)  # type: ignore[arg-type]


def test_success_threshold_needs_consecutive_successes() -> None:
    probe = _probe(success_threshold=3)
    state = ProbeState()
    for ok in (True, True, False, True, True):
        state = observe(state, ok, probe)
        assert not state.ready
    state = observe(state, True, probe)
    assert state.ready and state.successes == 3


def test_failure_threshold_needs_consecutive_failures() -> None:
    probe = _probe(failure_threshold=3)
    state = observe(ProbeState(), True, probe)
    assert state.ready
    for ok in (False, False, True, False, False):
        state = observe(state, ok, probe)
        assert state.ready
    state = observe(state, False, probe)
    assert not state.ready and state.failures == 3


def test_starts_unready_and_failures_keep_it_so() -> None:
    probe = _probe()
    state = ProbeState()
    for _ in range(5):
        state = observe(state, False, probe)
    assert not state.ready


def test_tracker_schedule_and_transitions_with_a_fake_clock() -> None:
    probe = _probe(initial_delay_seconds=5, period_seconds=2, failure_threshold=2)
    now = 100.0
    tracker = ProbeTracker(probe, started_at=now)
    assert not tracker.due(now) and not tracker.due(104.9)
    assert tracker.next_due == 105.0
    now = 105.0
    assert tracker.due(now)
    assert tracker.record(True, now) is True  # not ready -> ready
    assert tracker.ready and tracker.next_due == 107.0
    assert not tracker.due(106.9)
    assert tracker.record(False, 107.0) is False  # one failure of two: still ready
    assert tracker.ready
    assert tracker.record(False, 109.0) is True  # second failure: un-ready
    assert not tracker.ready and tracker.next_due == 111.0


def test_a_late_probe_is_scheduled_from_its_own_start() -> None:
    tracker = ProbeTracker(_probe(period_seconds=1), started_at=0.0)
    tracker.record(True, 30.0)  # the loop was busy: probed long after it was due
    assert tracker.next_due == 31.0


@pytest.mark.parametrize(
    "kw",
    [
        {"period_seconds": 0},
        {"timeout_seconds": -1},
        {"failure_threshold": 0},
        {"success_threshold": 0},
        {"initial_delay_seconds": -1},
    ],
)
def test_invalid_probe_settings_are_rejected(kw: dict[str, float]) -> None:
    with pytest.raises(PodSpecError):
        _probe(**kw)


def test_adopted_run_that_passes_keeps_its_readiness() -> None:
    probe = ProbeSpec("http", 80, success_threshold=3, failure_threshold=2, period_seconds=5)
    tracker = ProbeTracker(probe, started_at=100.0)
    tracker.resume(True, 100.0)
    assert tracker.ready
    assert tracker.next_due == 105.0
    tracker.record(False, 105.0)
    assert tracker.ready  # one failure of two
    tracker.record(False, 110.0)
    assert not tracker.ready


def test_adopted_run_that_fails_starts_unready() -> None:
    probe = ProbeSpec("http", 80, success_threshold=2, failure_threshold=3)
    tracker = ProbeTracker(probe, started_at=0.0)
    tracker.resume(False, 0.0)
    assert not tracker.ready
    assert tracker.state.failures == 1
    tracker.record(True, 1.0)
    assert not tracker.ready
    tracker.record(True, 2.0)
    assert tracker.ready
