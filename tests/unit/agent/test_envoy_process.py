"""Process supervision, exercised with a stand-in child process (not Envoy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pilotfish.agent.backoff import BackoffPolicy
from pilotfish.agent.envoy_process import EnvoyProcess, envoy_command
from polling import apoll

SLEEPER = [sys.executable, "-c", "import time; print('child up', flush=True); time.sleep(60)"]
FAST = BackoffPolicy(initial=0.05, factor=2.0, maximum=0.2, reset_after=30.0)


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    await apoll(predicate, "the condition", timeout, interval=0.02, ignore=())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_envoy_command_has_the_supervision_flags() -> None:
    cmd = envoy_command(
        "/bin/envoy", Path("/w/b.json"), concurrency=3, log_level="debug", drain_time=0.4
    )
    assert cmd[:3] == ["/bin/envoy", "-c", "/w/b.json"]
    assert "--disable-hot-restart" in cmd
    assert cmd[cmd.index("--concurrency") + 1] == "3"
    assert cmd[cmd.index("--log-level") + 1] == "debug"
    assert cmd[cmd.index("--drain-time-s") + 1] == "1"  # rounded up, never zero
    assert cmd[cmd.index("--drain-strategy") + 1] == "immediate"


async def test_restarts_after_kill_9_and_stops_on_request(tmp_path: Path) -> None:
    proc = EnvoyProcess(SLEEPER, tmp_path, policy=FAST)
    await proc.start()
    try:
        first = proc.pid
        assert first is not None
        assert (tmp_path / "envoy.pid").read_text().strip() == str(first)
        await _until(lambda: b"child up" in proc.log_path.read_bytes())

        os.kill(first, signal.SIGKILL)
        await _until(lambda: proc.pid not in (None, first))
        second = proc.pid
        assert second is not None and _alive(second)
        assert proc.starts == 2
        assert (tmp_path / "envoy.pid").read_text().strip() == str(second)
        await _until(lambda: proc.log_path.read_bytes().count(b"child up") == 2)
    finally:
        returncode = await proc.stop(timeout=5.0)
    assert returncode == -signal.SIGTERM
    assert not _alive(second)
    assert proc.pid is None
    assert not (tmp_path / "envoy.pid").exists()
    assert proc.starts == 2


async def test_stop_during_back_off_does_not_restart(tmp_path: Path) -> None:
    slow = BackoffPolicy(initial=30.0, maximum=30.0)
    proc = EnvoyProcess([sys.executable, "-c", "pass"], tmp_path, policy=slow)
    await proc.start()
    await _until(lambda: proc.pid is None)
    started = time.monotonic()
    await proc.stop()
    assert time.monotonic() - started < 5.0
    assert proc.starts == 1


async def test_a_missing_binary_fails_start(tmp_path: Path) -> None:
    proc = EnvoyProcess([str(tmp_path / "no-such-envoy")], tmp_path)
    with pytest.raises(OSError):
        await proc.start()
    await proc.stop()


_AGENT = """
import asyncio, sys
from pathlib import Path
from pilotfish.agent.envoy_process import EnvoyProcess

async def main():
    proc = EnvoyProcess(
        [sys.executable, "-c", "import time; time.sleep(60)"], Path(sys.argv[1])
    )
    await proc.start()
    print(proc.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_the_child_dies_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    # The supervisor (an agent) is SIGKILLed: nothing drains the child, the kernel
    # kills it (parent-death signal), so no orphan keeps the proxy's ports.
    agent = subprocess.Popen(
        [sys.executable, "-c", _AGENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert agent.stdout is not None
        child = int(agent.stdout.readline())
        assert _alive(child)
        agent.kill()
        agent.wait(timeout=10)
        await _until(lambda: not _alive(child))
    finally:
        agent.kill()
        agent.wait(timeout=10)
