"""Process groups: stopping a whole group, and killing recorded groups after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pilotfish.runtime.process import (
    ProcessRecord,
    group_alive,
    kill_recorded,
    process_start_time,
    read_pid_record,
    spawn,
    stop_group,
    write_pid_record,
)
from polling import apoll, poll

# A parent that forks a child (in the parent's group) and then waits.
FORKING = (
    "import subprocess, time; subprocess.Popen(['sleep', '60']);"
    " print('up', flush=True); time.sleep(60)"
)
# Ignores SIGTERM: only SIGKILL stops it.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('up', flush=True); time.sleep(60)"
)


async def _wait_for_line(path: Path, text: str) -> None:
    def seen() -> bool:
        return text in (path.read_text() if path.exists() else "")

    await apoll(seen, f"{text!r} in {path}", 10, interval=0.02)


async def _wait_group_gone(pgid: int) -> None:
    await apoll(
        lambda: not group_alive(pgid), f"process group {pgid} to be gone", 10, interval=0.02
    )


async def test_stop_group_takes_the_children_too(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    proc = await spawn([sys.executable, "-c", FORKING], log)
    await _wait_for_line(log, "up")
    assert os.getpgid(proc.pid) == proc.pid  # leads its own group
    code = await stop_group(proc, grace=5)
    assert code == -signal.SIGTERM
    await _wait_group_gone(proc.pid)


async def test_stop_group_kills_after_grace(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    proc = await spawn([sys.executable, "-c", STUBBORN], log)
    await _wait_for_line(log, "up")
    began = time.monotonic()
    assert await stop_group(proc, grace=0.3) == -signal.SIGKILL
    assert time.monotonic() - began >= 0.3
    await _wait_group_gone(proc.pid)


async def test_output_is_appended(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "app.log"
    for word in ("first", "second"):
        proc = await spawn([sys.executable, "-c", f"print({word!r})"], log, env={})
        assert await proc.wait() == 0
    assert log.read_text().split() == ["first", "second"]


def test_pid_record_round_trip_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "pod" / "pids.json"
    records = {"app": ProcessRecord(10, 10, 5), "sidecar": ProcessRecord(11, 11, None)}
    write_pid_record(path, "pod", records)
    assert read_pid_record(path) == records
    write_pid_record(path, "pod", {})
    assert not path.exists()
    assert read_pid_record(path) == {}


def test_kill_recorded_kills_live_groups_only(tmp_path: Path) -> None:
    # Started like a crashed supervisor's pods: own sessions, nobody waiting for them.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FORKING], start_new_session=True, stdout=subprocess.DEVNULL
        )
        for _ in range(2)
    ]
    try:
        alive, other = procs
        write_pid_record(
            tmp_path / "a-0" / "pids.json",
            "a-0",
            {
                "app": ProcessRecord(alive.pid, alive.pid, process_start_time(alive.pid)),
                # A recycled pid: same number, another start time; must be spared.
                "sidecar": ProcessRecord(other.pid, other.pid, -1),
            },
        )
        assert kill_recorded(tmp_path) == 1
        assert alive.wait(timeout=10) == -signal.SIGKILL
        # The forked child dies with its group.
        poll(lambda: not group_alive(alive.pid), "the killed group to be gone", 10, interval=0.02)
        assert other.poll() is None
        assert not (tmp_path / "a-0" / "pids.json").exists()
        assert kill_recorded(tmp_path) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
