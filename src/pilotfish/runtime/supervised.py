"""Processes the runtime supervises: its own children, or processes adopted from an earlier run.

Theory of operation:

- ``Supervised`` is what a pod runner or gateway needs of a process: its pid
  (which is also its process group: every process leads its own session),
  whether it still runs, ``wait()`` for its end, and the exit code when known.
- ``ChildProcess`` wraps an ``asyncio.subprocess.Process`` this supervisor
  spawned: ``wait()`` reaps it and yields its exit code.
- ``AdoptedProcess`` is a process started by an earlier supervisor that
  died; it was re-parented (to init or a subreaper), so it cannot be
  ``wait()``-ed and its exit code is never known (``None``). ``adopt()``
  opens it only if its kernel start time still equals the recorded one (a
  recycled pid is another process), then watches a pidfd
  (``os.pidfd_open``, Linux >= 5.3): the descriptor turns readable when the
  process exits and ``loop.add_reader`` reports it, with no polling. Where
  pidfds are unavailable it falls back to polling ``/proc/<pid>/stat``
  (state and start time) every ``poll_interval`` seconds. Signals go to the
  whole group once (a second SIGTERM would make an agent skip its drain).
- ``stop_supervised`` is the Kubernetes termination sequence for either kind:
  SIGTERM to the group, SIGKILL after ``grace`` seconds, and a final SIGKILL
  to any member left, sent only while the group is provably still the
  recorded one (see ``group_is_recorded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Protocol

from pilotfish.runtime.process import ProcessRecord, group_alive, process_start_time

__all__ = [
    "AdoptedProcess",
    "ChildProcess",
    "Supervised",
    "group_is_recorded",
    "stop_supervised",
]

_POLL_INTERVAL = 0.5


def _runs(pid: int, start_time: int | None) -> bool:
    """Whether ``pid`` is a live (not zombie) process with kernel start time ``start_time``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[0] not in ("Z", "X") and int(fields[19]) == start_time
    except (IndexError, ValueError):
        return False


class Supervised(Protocol):
    """A supervised process (the leader of its own process group)."""

    @property
    def pid(self) -> int: ...

    @property
    def running(self) -> bool: ...

    @property
    def exit_code(self) -> int | None:
        """The exit code once exited (negative: killed by that signal); None while
        running or when it cannot be known (adopted processes)."""

    def record(self) -> ProcessRecord:
        """pid, group and kernel start time, for ``pids.json``."""

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process's group (a no-op once it is gone)."""

    async def wait(self) -> int | None:
        """Wait for the process to exit; its exit code, or None when unknown."""


def group_is_recorded(record: ProcessRecord) -> bool:
    """True while ``record``'s group exists and is still the recorded one.

    A live leader must have the recorded start time. Once the leader is gone,
    surviving members keep the group id reserved (the kernel does not hand out
    a pid that is still a group's id), so the group is still ours.
    """
    if not group_alive(record.pgid):
        return False
    now = process_start_time(record.pgid)
    return now is None or record.start_time is None or now == record.start_time


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class ChildProcess:
    """A process this supervisor spawned (``asyncio.subprocess.Process``)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._record = ProcessRecord(proc.pid, proc.pid, process_start_time(proc.pid))

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.returncode is None

    @property
    def exit_code(self) -> int | None:
        return self._proc.returncode

    def record(self) -> ProcessRecord:
        return self._record

    def signal_group(self, sig: signal.Signals) -> None:
        # Until reaped, the leader's pid (= the group id) cannot be reused.
        if self._proc.returncode is None or group_is_recorded(self._record):
            _killpg(self._proc.pid, sig)

    async def wait(self) -> int | None:
        return await self._proc.wait()


class AdoptedProcess:
    """A process an earlier supervisor started; see the module docstring."""

    def __init__(self, record: ProcessRecord, poll_interval: float = _POLL_INTERVAL) -> None:
        self._record = record
        self._poll_interval = poll_interval
        self._pidfd: int | None = None
        self._exited = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    @classmethod
    def adopt(
        cls, record: ProcessRecord, *, use_pidfd: bool = True, poll_interval: float = _POLL_INTERVAL
    ) -> AdoptedProcess | None:
        """Watch the recorded process; None if it is gone or its pid now names another one.

        Call from the event loop that will wait on it.
        """
        if record.start_time is None or not _runs(record.pid, record.start_time):
            return None
        proc = cls(record, poll_interval)
        if use_pidfd and hasattr(os, "pidfd_open"):
            try:
                proc._pidfd = os.pidfd_open(record.pid)
            except ProcessLookupError:
                return None
            except OSError:  # ENOSYS (kernel < 5.3) and the like: poll instead
                proc._pidfd = None
        # The pid could have been recycled between the check and pidfd_open.
        if not _runs(record.pid, record.start_time):
            proc._close()
            return None
        if proc._pidfd is not None:
            proc._loop.add_reader(proc._pidfd, proc._on_exit)
        else:
            proc._poller = proc._loop.create_task(proc._poll(), name=f"adopted-{record.pid}")
        return proc

    @property
    def pid(self) -> int:
        return self._record.pid

    @property
    def running(self) -> bool:
        if self._exited.is_set():
            return False
        if self._pidfd is None and not _runs(self.pid, self._record.start_time):
            self._mark_exited()
            return False
        return True

    @property
    def exit_code(self) -> int | None:
        return None  # not our child: the kernel tells only its parent

    @property
    def watched_by_pidfd(self) -> bool:
        return self._pidfd is not None

    def record(self) -> ProcessRecord:
        return self._record

    def signal_group(self, sig: signal.Signals) -> None:
        # While the leader runs, its pid is the group's id; afterwards only as long
        # as members keep the group (and its id) alive.
        if self.running or group_is_recorded(self._record):
            _killpg(self._record.pgid, sig)

    async def wait(self) -> int | None:
        await self._exited.wait()
        return None

    def close(self) -> None:
        """Stop watching (the process keeps running)."""
        self._close()

    def _on_exit(self) -> None:
        self._mark_exited()

    def _mark_exited(self) -> None:
        self._close()
        self._exited.set()

    def _close(self) -> None:
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_reader(fd)
            os.close(fd)
        poller, self._poller = self._poller, None
        if poller is not None and poller is not asyncio.current_task():
            poller.cancel()

    async def _poll(self) -> None:
        while _runs(self.pid, self._record.start_time):
            await asyncio.sleep(self._poll_interval)
        self._mark_exited()


async def stop_supervised(proc: Supervised, grace: float) -> int | None:
    """SIGTERM the process's group, SIGKILL it after ``grace`` s; return the exit code.

    Whatever happens to the leader, the group is SIGKILLed at the end if any
    member is left (and the group is still the recorded one).
    """
    if proc.running:
        proc.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.signal_group(signal.SIGKILL)
            await proc.wait()
    if group_is_recorded(proc.record()):
        proc.signal_group(signal.SIGKILL)
    return proc.exit_code
