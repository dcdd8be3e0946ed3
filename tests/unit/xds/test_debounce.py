"""The debouncer, driven by a fake clock: no real waiting."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from pilotfish.xds.debounce import BuildPacer, Debouncer


class FakeClock:
    """Time moves only when the test calls ``advance``."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking due sleepers in order, letting tasks run."""
        target = self.t + seconds
        while True:
            await settle()
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            due, _, fut = heapq.heappop(self._sleepers)
            self.t = max(self.t, due)
            if not fut.done():
                fut.set_result(None)
        self.t = target
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class Recorder:
    def __init__(self, clock: FakeClock, run_for: float = 0.0) -> None:
        self.clock = clock
        self.run_for = run_for
        self.fired_at: list[float] = []

    async def __call__(self) -> None:
        self.fired_at.append(self.clock.now())
        if self.run_for:
            await self.clock.sleep(self.run_for)


async def test_fires_after_quiet_period() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    deb = Debouncer(rec, quiet_period=0.125, max_delay=1.0, clock=clock)
    deb.trigger()
    await clock.advance(0.0625)
    await clock.advance(0.03125)
    assert rec.fired_at == []
    assert deb.pending
    await clock.advance(0.03125)
    assert rec.fired_at == [0.125]
    assert not deb.pending
    await deb.wait_idle()


async def test_each_event_restarts_quiet_period() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    deb = Debouncer(rec, quiet_period=0.125, max_delay=1.0, clock=clock)
    for _ in range(5):  # events at 0, 0.0625, ..., 0.25
        deb.trigger()
        await clock.advance(0.0625)
    assert rec.fired_at == []
    await clock.advance(0.0625)
    assert rec.fired_at == [0.25 + 0.125]
    assert deb.runs == 1


async def test_max_delay_caps_a_steady_stream_of_events() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    deb = Debouncer(rec, quiet_period=0.125, max_delay=0.5, clock=clock)
    for _ in range(20):  # an event every 0.0625 s, t = 0 .. 1.1875: never quiet
        deb.trigger()
        await clock.advance(0.0625)
    # max_delay after the first event, then max_delay after the next unfired one.
    assert rec.fired_at == [0.5, 1.0]
    await clock.advance(1.0)
    # The tail of the burst is not lost: quiet_period after its last event.
    assert rec.fired_at == [0.5, 1.0, 1.1875 + 0.125]


async def test_events_during_callback_cause_exactly_one_more_run() -> None:
    clock = FakeClock()
    rec = Recorder(clock, run_for=1.0)
    deb = Debouncer(rec, quiet_period=0.125, max_delay=0.25, clock=clock)
    deb.trigger()
    await clock.advance(0.125)
    assert rec.fired_at == [0.125]
    assert deb.running
    for _ in range(5):  # events at 0.125 .. 0.625, while the callback runs
        deb.trigger()
        await clock.advance(0.125)
    assert len(rec.fired_at) == 1  # runs never overlap
    await clock.advance(0.5)  # callback ends at 1.125; its events are past max_delay
    assert rec.fired_at[1] == 1.125
    await clock.advance(5.0)
    assert len(rec.fired_at) == 2
    await deb.wait_idle()
    assert not deb.pending and not deb.running


async def test_failing_callback_does_not_stop_later_runs() -> None:
    clock = FakeClock()
    calls: list[float] = []

    async def boom() -> None:
        calls.append(clock.now())
        raise RuntimeError("boom")

    deb = Debouncer(boom, quiet_period=0.125, max_delay=1.0, clock=clock)
    deb.trigger()
    await clock.advance(0.25)
    deb.trigger()
    await clock.advance(0.25)
    assert len(calls) == 2


async def test_close_drops_pending_events() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    deb = Debouncer(rec, quiet_period=0.1, max_delay=1.0, clock=clock)
    deb.trigger()
    await deb.close()
    await clock.advance(1.0)
    deb.trigger()
    await clock.advance(1.0)
    assert rec.fired_at == []
    await asyncio.wait_for(deb.wait_idle(), 1.0)


def test_rejects_negative_periods() -> None:
    with pytest.raises(ValueError):
        Debouncer(Recorder(FakeClock()), quiet_period=-1, max_delay=1)
    with pytest.raises(ValueError):
        Debouncer(Recorder(FakeClock()), quiet_period=0.1, max_delay=1, cost_ratio=-1)


async def test_leading_runs_an_idle_first_event_at_once() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    deb = Debouncer(rec, quiet_period=0.125, max_delay=1.0, clock=clock, leading=True)
    deb.trigger()
    await settle()
    assert rec.fired_at == [0.0]  # no quiet period waited
    await deb.wait_idle()
    # Long after: idle again, so again at once.
    await clock.advance(1.0)
    deb.trigger()
    await settle()
    assert rec.fired_at == [0.0, 1.0]


async def test_leading_still_merges_the_rest_of_a_burst() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    deb = Debouncer(rec, quiet_period=0.125, max_delay=1.0, clock=clock, leading=True)
    deb.trigger()  # t=0: the leading run
    await clock.advance(0.0625)
    for _ in range(4):  # t=0.0625 .. 0.25, each within the quiet period of the last
        deb.trigger()
        await clock.advance(0.0625)
    assert rec.fired_at == [0.0]
    await clock.advance(0.125)
    # One more run for the four, a quiet period after the last of them.
    assert rec.fired_at == [0.0, 0.25 + 0.125]
    assert deb.runs == 2


async def test_leading_waits_after_a_recent_run() -> None:
    """An event soon after a run ended is debounced: it may start a burst."""
    clock = FakeClock()
    rec = Recorder(clock, run_for=0.25)
    deb = Debouncer(rec, quiet_period=0.125, max_delay=1.0, clock=clock, leading=True)
    deb.trigger()
    await clock.advance(0.25)  # the run ends at 0.25
    assert rec.fired_at == [0.0] and not deb.running
    await clock.advance(0.0625)
    deb.trigger()  # 0.0625 after the run: not idle long enough
    await clock.advance(0.0625)
    assert rec.fired_at == [0.0]
    await clock.advance(0.0625)
    assert rec.fired_at == [0.0, 0.3125 + 0.125]


async def test_leading_events_during_a_run_cause_one_more_debounced_run() -> None:
    clock = FakeClock()
    rec = Recorder(clock, run_for=0.5)
    deb = Debouncer(rec, quiet_period=0.125, max_delay=1.0, clock=clock, leading=True)
    deb.trigger()
    await clock.advance(0.125)
    deb.trigger()  # while the leading run runs
    await clock.advance(0.375)  # the run ends at 0.5; the event is 0.375 old by then
    await clock.advance(0.0)
    assert rec.fired_at == [0.0, 0.5]
    await clock.advance(2.0)
    assert deb.runs == 2


async def test_cost_ratio_lengthens_the_quiet_period_after_a_costly_run() -> None:
    clock = FakeClock()
    rec = Recorder(clock, run_for=0.25)
    deb = Debouncer(
        rec, quiet_period=0.125, max_delay=2.0, clock=clock, leading=True, cost_ratio=2.0
    )
    deb.trigger()
    await clock.advance(0.25)  # the leading run took 0.25: quiet for 0.5 from now on
    assert rec.fired_at == [0.0] and deb.quiet_period == 0.5
    await clock.advance(0.25)
    deb.trigger()  # 0.25 after the run: not rested for 0.5, so debounced
    await clock.advance(0.375)
    assert rec.fired_at == [0.0]  # 0.125 (the base) would have fired by now
    await clock.advance(0.125)
    assert rec.fired_at == [0.0, 0.5 + 0.5]
    await clock.advance(0.25)  # that run took 0.25 too
    await clock.advance(1.0)
    deb.trigger()  # isolated: long rested, so at once
    await settle()
    assert rec.fired_at == [0.0, 1.0, 2.25]


async def test_cost_ratio_keeps_the_configured_quiet_period_after_cheap_runs() -> None:
    clock = FakeClock()
    rec = Recorder(clock, run_for=0.01)
    deb = Debouncer(
        rec, quiet_period=0.125, max_delay=1.0, clock=clock, leading=True, cost_ratio=3.0
    )
    deb.trigger()
    await clock.advance(0.01)
    assert deb.quiet_period == 0.125


# -- BuildPacer: when the next snapshot build may start --------------------------------


class Push:
    """Stands in for the xDS server's push state: ``busy`` until ``finish()``."""

    def __init__(self, *, busy: bool = False) -> None:
        self.busy = busy
        self._done = asyncio.Event()

    def finish(self) -> None:
        self.busy = False
        self._done.set()

    async def wait_idle(self) -> None:
        await self._done.wait()


async def turn_at(clock: FakeClock, pacer: BuildPacer, push: Push) -> asyncio.Task[float]:
    """Start ``pacer.turn`` now; the task's result is the clock when it returned."""

    async def run() -> float:
        await pacer.turn(lambda: push.busy, push.wait_idle)
        return clock.now()

    task = asyncio.ensure_future(run())
    await settle()
    return task


async def test_pacer_first_and_isolated_builds_go_at_once() -> None:
    clock = FakeClock()
    pacer = BuildPacer(clock, max_wait=1.0)
    push = Push()
    task = await turn_at(clock, pacer, push)
    assert task.done() and task.result() == 0.0
    pacer.record(0.0, 0.1)
    # Long after the build (rest over) and no push busy: at once.
    await clock.advance(0.5)
    task = await turn_at(clock, pacer, push)
    assert task.done() and task.result() == 0.5
    assert pacer.waited == 0.0


async def returns_at(clock: FakeClock, task: asyncio.Task[float], at: float) -> None:
    """The turn still waits just before ``at`` and returns at ``at``."""
    await clock.advance(at - clock.now() - 1 / 64)
    assert not task.done()
    await clock.advance(1 / 64)
    assert task.done() and task.result() == at


async def test_pacer_rests_as_long_as_the_last_build_took() -> None:
    clock = FakeClock()
    pacer = BuildPacer(clock, max_wait=1.0)
    pacer.record(0.0, 0.25)  # a 0.25 s build ending at 0.25: next no sooner than 0.5
    await clock.advance(0.3)
    await returns_at(clock, await turn_at(clock, pacer, Push()), 0.5)
    assert pacer.waited == pytest.approx(0.2)


async def test_pacer_ratio_scales_the_rest() -> None:
    clock = FakeClock()
    pacer = BuildPacer(clock, ratio=2.0, max_wait=1.0)
    pacer.record(0.0, 0.125)  # next no sooner than 0.125 + 2 * 0.125
    await returns_at(clock, await turn_at(clock, pacer, Push()), 0.375)


async def test_pacer_waits_for_the_push_in_flight() -> None:
    clock = FakeClock()
    push = Push(busy=True)
    task = await turn_at(clock, BuildPacer(clock, max_wait=1.0), push)
    await clock.advance(0.375)
    assert not task.done()
    push.finish()
    await settle()
    assert task.done() and task.result() == 0.375


async def test_pacer_waits_for_a_push_no_longer_than_max_wait() -> None:
    clock = FakeClock()
    push = Push(busy=True)  # never finishes
    await returns_at(clock, await turn_at(clock, BuildPacer(clock, max_wait=0.5), push), 0.5)


async def test_pacer_counts_its_rest_against_max_wait() -> None:
    clock = FakeClock()
    pacer = BuildPacer(clock, max_wait=0.5)
    pacer.record(0.0, 0.25)  # rest until 0.5, where max_wait ends: no push wait left
    push = Push(busy=True)
    await returns_at(clock, await turn_at(clock, pacer, push), 0.5)


async def test_pacer_cancelled_while_waiting_leaves_nothing_running() -> None:
    clock = FakeClock()
    pacer = BuildPacer(clock, max_wait=1.0)
    push = Push(busy=True)
    task = await turn_at(clock, pacer, push)
    before = len(asyncio.all_tasks())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    # The pacer's own waits (the push's idle and the clock) went with it.
    assert len(asyncio.all_tasks()) <= before - 3


def test_pacer_refuses_negative_settings() -> None:
    with pytest.raises(ValueError):
        BuildPacer(ratio=-1.0)
    with pytest.raises(ValueError):
        BuildPacer(max_wait=-1.0)
