"""The shared restart loop: pods' processes and gateways restart with one back-off policy."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pilotfish.agent.backoff import BackoffPolicy
from pilotfish.runtime.gateways import GatewayProcess, GatewaySpec
from pilotfish.runtime.restarts import CANNOT_EXECUTE, RestartHooks, supervise_restarts
from pilotfish.runtime.supervised import ChildProcess, Supervised

POLICY = BackoffPolicy(initial=0.01, factor=2.0, maximum=1.0, reset_after=30.0)


class _Clock:
    """Time that moves only when the test says so (uptimes of real, short runs)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.per_read: list[float] = []

    def __call__(self) -> float:
        if self.per_read:
            self.now += self.per_read.pop(0)
        return self.now


async def _exit_at_once(code: int) -> ChildProcess:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", f"raise SystemExit({code})")
    return ChildProcess(proc)


async def test_quick_deaths_back_off_and_a_long_healthy_run_resets() -> None:
    clock = _Clock()
    # Each run reads the clock twice (start, end). Runs 1-3 die at once; run 4
    # stays up 60 s (longer than reset_after), run 5 dies at once again.
    clock.per_read = [0, 0, 0, 0, 0, 0, 0, 60, 0, 0]
    state: dict[str, Supervised | None] = {"proc": await _exit_at_once(3)}
    delays: list[float] = []
    codes: list[int | None] = []

    async def exited(code: int | None) -> bool:
        codes.append(code)
        return len(codes) < 5

    async def sleep(delay: float) -> bool:
        return True

    async def respawn() -> None:
        state["proc"] = await _exit_at_once(3)

    hooks = RestartHooks(
        current=lambda: state["proc"],
        stopping=lambda: False,
        exited=exited,
        restarting=lambda code, delay: delays.append(delay),
        sleep=sleep,
        respawn=respawn,
        cannot_start=lambda exc: None,
    )
    await asyncio.wait_for(supervise_restarts(hooks, POLICY, clock), 30)
    assert codes == [3, 3, 3, 3, 3]
    # 0.01, 0.02, 0.04, then the 60 s run resets the count: 0.01 again.
    assert delays == [0.01, 0.02, 0.04, 0.01]


async def test_a_process_that_cannot_start_is_retried_with_back_off() -> None:
    delays: list[float] = []
    codes: list[int | None] = []
    errors: list[str] = []

    async def exited(code: int | None) -> bool:
        codes.append(code)
        return len(codes) < 3

    async def sleep(delay: float) -> bool:
        return True

    async def respawn() -> None:
        raise FileNotFoundError(2, "No such file", "/nonexistent/agent")

    hooks = RestartHooks(
        current=lambda: None,
        stopping=lambda: False,
        exited=exited,
        restarting=lambda code, delay: delays.append(delay),
        sleep=sleep,
        respawn=respawn,
        cannot_start=lambda exc: errors.append(str(exc)),
    )
    await asyncio.wait_for(supervise_restarts(hooks, POLICY), 10)
    assert codes == [CANNOT_EXECUTE] * 3
    assert delays == [0.01, 0.02]
    assert len(errors) == 2 and "/nonexistent/agent" in errors[0]


class _DyingGateway(GatewayProcess):
    """A gateway whose agent is a process that exits at once (no Envoy needed)."""

    def argv(self) -> list[str]:
        return [sys.executable, "-c", "raise SystemExit(1)"]


async def test_gateway_restarts_reset_their_back_off_after_a_healthy_run(
    tmp_path: Path,
) -> None:
    clock = _Clock()
    spec = GatewaySpec("istio-ingressgateway", "istio-system", (), "127.0.0.1", 1, 2)
    gw = _DyingGateway(
        spec,
        "127.0.0.1:1",
        tmp_path / "logs",
        tmp_path / "work",
        sys.executable,
        backoff=POLICY,
        clock=clock,
    )
    (tmp_path / "work" / spec.name).mkdir(parents=True)
    waits: list[float] = []
    real_sleep = gw._sleep_unless_stopping

    async def recorded_sleep(delay: float) -> bool:
        waits.append(delay)
        # Run 3 (after the second wait) "stays up" 60 s: a healthy run.
        if len(waits) == 2:
            clock.per_read = [0, 60]
        return await real_sleep(delay)

    gw._sleep_unless_stopping = recorded_sleep  # type: ignore[method-assign]
    await gw.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while len(waits) < 4:
            assert asyncio.get_running_loop().time() < deadline, waits
            await asyncio.sleep(0.01)
    finally:
        await gw.stop(grace=1)
    assert waits[:4] == [0.01, 0.02, 0.01, 0.02]
    assert gw.restarts >= 4
