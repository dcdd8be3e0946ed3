"""Run one Envoy process, restart it when it dies, stop it on request.

Theory of operation: ``start()`` spawns Envoy and a monitor task. The monitor
awaits the process; when it exits without ``stop()`` having been called, it
waits out a back-off delay (``pilotfish.agent.backoff``) and spawns a new one
from the same bootstrap. Envoy runs with ``--disable-hot-restart``, so a new
process never waits for shared memory left by a killed one.

Envoy's combined stdout/stderr goes through a pipe that a pump task copies to
``<work_dir>/envoy.log`` (kept across restarts) and, when asked, to our own
stderr. Envoy gets its own process group, so a Ctrl-C in a terminal reaches
only the agent, which then drains Envoy gracefully; on Linux Envoy is also
told to die with the agent (the parent-death signal) so a crashed agent never
leaves an orphan proxy holding its ports. That signal is set by util-linux's
``setpriv --pdeathsig KILL``, which then execs Envoy in its place (same pid),
not by a Python pre-exec hook: a hook makes the child run Python between fork
and exec, including the fork handlers of libraries such as gRPC, whose
threads do not exist in the child; an agent hosting gRPC (the in-process
control plane of tests, the agent's own channels) saw such children die
before Envoy started. Each spawn writes Envoy's pid to ``<work_dir>/envoy.pid``
for operators and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from pilotfish.agent.backoff import BackoffPolicy, failures_after_exit, restart_delay
from pilotfish.fsutil import atomic_write_text

__all__ = ["EnvoyProcess", "envoy_command"]

_READ_CHUNK = 65536
# Sets the parent-death signal, then execs the command (util-linux, always on Debian).
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def envoy_command(
    envoy_path: str,
    bootstrap_path: Path,
    *,
    concurrency: int,
    log_level: str,
    drain_time: float,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Envoy's argument vector (pure)."""
    return [
        envoy_path,
        "-c",
        str(bootstrap_path),
        "--disable-hot-restart",
        "--concurrency",
        str(concurrency),
        "--log-level",
        log_level,
        # Envoy takes whole seconds; never zero, which would make LDS updates
        # cut in-flight connections at once.
        "--drain-time-s",
        str(max(1, math.ceil(drain_time))),
        "--drain-strategy",
        "immediate",
        *extra_args,
    ]


def _dying_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that Linux SIGKILLs it when the agent exits (when setpriv exists)."""
    if _SETPRIV is None:
        return list(argv)
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]


class EnvoyProcess:
    """Supervises one Envoy process built from ``command``.

    Not thread-safe; use from one event loop. ``start()`` raises ``OSError`` if
    the first spawn fails (missing binary); later spawn failures are retried
    with back-off like crashes.
    """

    def __init__(
        self,
        command: Sequence[str],
        work_dir: Path,
        *,
        inherit_output: bool = False,
        policy: BackoffPolicy | None = None,
        logger: logging.Logger | None = None,
        uid: int | None = None,
        gid: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._env = env
        self._uid = uid
        self._gid = gid
        self._command = list(command)
        self._work_dir = work_dir
        self._inherit_output = inherit_output
        self._policy = policy or BackoffPolicy()
        self._log = logger or logging.getLogger("pilotfish.agent.envoy")
        self._proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._log_file: IO[bytes] | None = None
        self._stopping = asyncio.Event()
        self._spawned = asyncio.Event()
        self._starts = 0
        self._failures = 0

    @property
    def log_path(self) -> Path:
        return self._work_dir / "envoy.log"

    @property
    def pid_path(self) -> Path:
        return self._work_dir / "envoy.pid"

    @property
    def pid(self) -> int | None:
        """Pid of the running Envoy, or None between runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def starts(self) -> int:
        """How many times Envoy has been spawned (1 + restarts)."""
        return self._starts

    async def start(self) -> None:
        if self._monitor is not None:
            raise RuntimeError("EnvoyProcess already started")
        self._work_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        try:
            await self._spawn()
        except BaseException:
            self._close_log()
            raise
        self._monitor = asyncio.create_task(self._supervise(), name="envoy-supervisor")

    async def stop(self, timeout: float = 5.0) -> int | None:
        """Stop Envoy (SIGTERM, then SIGKILL after ``timeout`` s); return its exit code.

        Idempotent. After ``stop()`` Envoy is never restarted.
        """
        self._stopping.set()
        returncode = await self._terminate(self._proc, timeout)
        if self._monitor is not None:
            await self._monitor
        # The supervisor may have been spawning a replacement when we asked it to stop.
        if self._proc is not None and self._proc.returncode is None:
            returncode = await self._terminate(self._proc, timeout)
        if self._pump is not None:
            await self._pump
        self._close_log()
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        return returncode

    async def _terminate(
        self, proc: asyncio.subprocess.Process | None, timeout: float
    ) -> int | None:
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                self._log.warning("envoy did not exit in %.1fs; killing it", timeout)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return proc.returncode

    async def _spawn(self) -> None:
        # setpriv would report a missing binary only as its exit code: look first.
        binary = self._command[0]
        if shutil.which(binary) is None:
            raise FileNotFoundError(2, os.strerror(2), binary)
        proc = await asyncio.create_subprocess_exec(
            *_dying_with_parent(self._command),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            process_group=0,
            env=self._env,
            user=self._uid,
            group=self._gid,
            extra_groups=[] if self._gid is not None else None,
        )
        self._proc = proc
        self._starts += 1
        atomic_write_text(self.pid_path, f"{proc.pid}\n")
        self._log.info("envoy started (pid %d, start #%d)", proc.pid, self._starts)
        assert proc.stdout is not None
        self._pump = asyncio.create_task(self._copy_output(proc.stdout), name="envoy-output")

    async def _copy_output(self, stream: asyncio.StreamReader) -> None:
        sink = sys.stderr.buffer if self._inherit_output else None
        while chunk := await stream.read(_READ_CHUNK):
            if self._log_file is not None:
                self._log_file.write(chunk)
                self._log_file.flush()
            if sink is not None:
                sink.write(chunk)
                sink.flush()

    async def _supervise(self) -> None:
        while True:
            proc = self._proc
            started = time.monotonic()
            returncode = await proc.wait() if proc is not None else None
            if self._pump is not None:
                await self._pump
            if self._stopping.is_set():
                return
            uptime = time.monotonic() - started
            self._failures = failures_after_exit(self._policy, self._failures, uptime)
            delay = restart_delay(self._policy, self._failures)
            self._log.warning(
                "envoy exited unexpectedly (code %s after %.1fs); restarting in %.1fs",
                returncode,
                uptime,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            try:
                await self._spawn()
            except OSError as exc:
                self._log.error("cannot start envoy: %s", exc)
                self._proc = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
