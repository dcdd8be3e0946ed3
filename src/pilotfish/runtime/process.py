"""Child processes of a pod: spawning into their own session, stopping by group, crash records.

Theory of operation:

- Every process is started with ``start_new_session=True``, so it leads its own
  process group and whatever it forks stays in that group; signals go to the
  whole group (``killpg``), never only to the leader.
- ``stop_group`` is the Kubernetes termination sequence: SIGTERM to the group,
  wait up to ``grace`` seconds for the leader, then SIGKILL to the group (which
  also takes down stragglers that ignored SIGTERM).
- So that a crashed supervisor's pods can be found later, each pod writes
  ``<work_dir>/<pod>/pids.json`` (atomically) with the pid, process group and
  kernel start time of its processes. ``kill_recorded`` reads those files and
  kills every recorded group that still exists; the start time guards against
  a recycled pid that now leads an unrelated group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pilotfish.fsutil import atomic_write_text

__all__ = [
    "PIDS_FILE",
    "PROXY_DIR",
    "ProcessRecord",
    "group_alive",
    "kill_recorded",
    "kill_recorded_dir",
    "process_start_time",
    "read_pid_record",
    "spawn",
    "stop_group",
    "write_pid_record",
]

PIDS_FILE = "pids.json"
#: The proxy's own directory inside a pod's directory (the agent's work dir).
PROXY_DIR = "proxy"


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """One recorded process: ``pgid`` equals ``pid`` (it leads its own session)."""

    pid: int
    pgid: int
    start_time: int | None  # kernel start time in clock ticks; None where /proc is missing


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (field 22 of ``/proc/<pid>/stat``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _proc_stat(pid_dir: Path) -> tuple[str, int] | None:
    """(state, process group) from ``/proc/<pid>/stat``, or None if it vanished."""
    try:
        stat = (pid_dir / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[2])
    except (IndexError, ValueError):
        return None


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process of group ``pgid`` exists.

    Zombies do not count: they run nothing, and their reaping is up to their
    parent (or to init, which in a container may never do it).
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(entry)
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                return True
    return False


async def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> asyncio.subprocess.Process:
    """Start ``argv`` in a new session, stdout and stderr appended to ``log_path``.

    Raises ``OSError`` when the program cannot be started.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The child keeps its own copy of the descriptor; ours is closed at once.
    with open(log_path, "ab") as log:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def stop_group(proc: asyncio.subprocess.Process, grace: float) -> int | None:
    """SIGTERM the process's group, SIGKILL it after ``grace`` s; return the exit code.

    Whatever happens to the leader, the group is SIGKILLed at the end if any
    member is left, so nothing it forked outlives it.
    """
    pgid = proc.pid
    if proc.returncode is None:
        _killpg(pgid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            _killpg(pgid, signal.SIGKILL)
            await proc.wait()
    if group_alive(pgid):
        _killpg(pgid, signal.SIGKILL)
    return proc.returncode


def write_pid_record(path: Path, pod: str, records: Mapping[str, ProcessRecord]) -> None:
    """Write ``{"pod": ..., "processes": {role: record}}`` atomically; no records deletes it."""
    if not records:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"pod": pod, "processes": {role: asdict(r) for role, r in sorted(records.items())}}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_pid_record(path: Path) -> dict[str, ProcessRecord]:
    """The records in one ``pids.json`` (empty when missing or unreadable)."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return {
            str(role): ProcessRecord(int(r["pid"]), int(r["pgid"]), r.get("start_time"))
            for role, r in data["processes"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _is_recorded_group(record: ProcessRecord) -> bool:
    """True if ``record``'s group still exists and is the one that was recorded."""
    if not group_alive(record.pgid):
        return False
    now = process_start_time(record.pgid)
    # The leader is gone but members remain: the kernel does not reuse a pid
    # that is still some group's id, so these are the recorded group's members.
    if now is None:
        return True
    return record.start_time is None or now == record.start_time


def _envoy_pid(pod_dir: Path) -> int | None:
    """Envoy's pid from the agent's ``envoy.pid``, if it is still an Envoy."""
    try:
        pid = int((pod_dir / PROXY_DIR / "envoy.pid").read_text(encoding="ascii").strip())
        comm = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "envoy" else None


def kill_recorded(work_dir: str | Path) -> int:
    """SIGKILL every process group recorded under ``<work_dir>/*/pids.json`` that is alive.

    Also kills the Envoy the agent recorded in ``<work_dir>/<pod>/proxy/envoy.pid``
    (it runs in a group of its own). Removes the ``pids.json`` files it read.
    Returns how many process groups were killed. For cleaning up after a
    supervisor that died without stopping its pods.
    """
    return sum(kill_recorded_dir(p.parent) for p in sorted(Path(work_dir).glob(f"*/{PIDS_FILE}")))


def kill_recorded_dir(pod_dir: Path) -> int:
    """``kill_recorded`` for one pod's (or gateway's) directory; returns groups killed."""
    killed = 0
    path = pod_dir / PIDS_FILE
    for record in read_pid_record(path).values():
        if _is_recorded_group(record):
            _killpg(record.pgid, signal.SIGKILL)
            killed += 1
    envoy = _envoy_pid(pod_dir)
    if envoy is not None and group_alive(envoy):
        _killpg(envoy, signal.SIGKILL)
        killed += 1
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return killed
