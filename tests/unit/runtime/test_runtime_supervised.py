"""Watching and stopping processes that are not our children (adopted after a crash)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilotfish.runtime.process import ProcessRecord, group_alive, process_start_time
from pilotfish.runtime.supervised import AdoptedProcess, ChildProcess, stop_supervised
from polling import apoll

# Starts `sleep` in a session of its own and exits at once: the sleep is
# re-parented (to init or a subreaper), so it is not a child of the test process.
_ORPHAN = (
    "import subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], start_new_session=True,"
    " stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "print(p.pid)\n"
)


def _orphan(*argv: str) -> ProcessRecord:
    out = subprocess.run(
        [sys.executable, "-c", _ORPHAN, *argv], capture_output=True, text=True, check=True
    )
    pid = int(out.stdout)
    return ProcessRecord(pid, pid, process_start_time(pid))


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.fixture
def orphan() -> object:
    record = _orphan("sleep", "60")
    assert os.getppid() != record.pid
    yield record
    if not _gone(record.pid):
        os.killpg(record.pgid, signal.SIGKILL)


@pytest.mark.parametrize("use_pidfd", [True, False])
async def test_exit_of_a_non_child_is_seen(orphan: ProcessRecord, use_pidfd: bool) -> None:
    proc = AdoptedProcess.adopt(orphan, use_pidfd=use_pidfd, poll_interval=0.05)
    assert proc is not None
    assert proc.watched_by_pidfd is use_pidfd
    assert proc.running and proc.pid == orphan.pid
    waiter = asyncio.create_task(proc.wait())
    await asyncio.sleep(0.1)
    assert not waiter.done()
    os.kill(orphan.pid, signal.SIGKILL)
    # Only its parent learns the exit code: it is reported as unknown.
    assert await asyncio.wait_for(waiter, 10) is None
    assert not proc.running
    assert proc.exit_code is None


async def test_a_recycled_pid_is_not_adopted(orphan: ProcessRecord) -> None:
    assert orphan.start_time is not None
    other = ProcessRecord(orphan.pid, orphan.pgid, orphan.start_time + 1)
    assert AdoptedProcess.adopt(other) is None
    assert AdoptedProcess.adopt(ProcessRecord(orphan.pid, orphan.pgid, None)) is None


async def test_a_dead_process_is_not_adopted(orphan: ProcessRecord) -> None:
    os.killpg(orphan.pgid, signal.SIGKILL)
    await apoll(lambda: _gone(orphan.pid), "the killed process to be gone", 10, interval=0.02)
    assert AdoptedProcess.adopt(orphan) is None


async def test_stop_supervised_terminates_an_adopted_group() -> None:
    # A shell that ignores nothing, with a child in its group.
    record = _orphan("sh", "-c", "sleep 60 & wait")
    proc = AdoptedProcess.adopt(record)
    assert proc is not None
    try:
        assert await stop_supervised(proc, grace=5) is None
        assert not proc.running
        await apoll(lambda: not group_alive(record.pgid), "the group to be gone", 5, interval=0.02)
    finally:
        if group_alive(record.pgid):
            os.killpg(record.pgid, signal.SIGKILL)


async def test_stop_supervised_kills_after_the_grace_period(tmp_path: Path) -> None:
    # The shell must ignore SIGTERM before it is sent one, or it just dies of it.
    trapped = tmp_path / "trapped"
    script = f"trap '' TERM; : > {trapped}; while :; do sleep 0.1; done"
    record = _orphan("sh", "-c", script)
    await apoll(trapped.exists, "the shell to ignore SIGTERM", 10, interval=0.02)
    proc = AdoptedProcess.adopt(record)
    assert proc is not None
    started = time.monotonic()
    await stop_supervised(proc, grace=0.5)
    assert time.monotonic() - started >= 0.5
    assert not proc.running


async def test_child_process_reports_its_exit_code() -> None:
    raw = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "raise SystemExit(3)", start_new_session=True
    )
    child = ChildProcess(raw)
    assert child.record().pid == raw.pid
    assert await child.wait() == 3
    assert child.exit_code == 3 and not child.running
