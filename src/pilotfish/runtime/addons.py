"""Telemetry addons of the local mesh: processes the runtime supervises beside it.

Theory of operation: an addon (Prometheus, the trace store, the dashboard) is
a plain program on the host, described by an ``AddonSpec``: its command line,
the URL that answers 200 once it is ready, and the files it owns. The
runtime starts each addon the profile or ``--addons`` asks for after the
gateways, restarts it with the same loop and back-off as pods and gateways
(``restarts``), lists it in ``pilotfish status`` and stops it with the mesh.
Its pid record lives in ``<work_dir>/addon-<name>/pids.json``, so the crash
clean-up that kills pods' recorded process groups (``process.kill_recorded``)
kills addons too. Addons hold no state worth keeping: a supervisor that adopts
a running mesh starts them afresh rather than adopting them.

An addon whose program is missing (Prometheus not installed) is reported with
a clear error and left out; the mesh still comes up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from pilotfish.agent.backoff import BackoffPolicy
from pilotfish.runtime.process import PIDS_FILE, spawn, write_pid_record
from pilotfish.runtime.restarts import RestartHooks, supervise_restarts
from pilotfish.runtime.settings_checks import ADDONS, AddonError, parse_addons
from pilotfish.runtime.supervised import ChildProcess, Supervised, stop_supervised

__all__ = ["ADDONS", "AddonError", "AddonProcess", "AddonSpec", "parse_addons"]

log = logging.getLogger("pilotfish.runtime.addons")


@dataclass(frozen=True, slots=True)
class AddonSpec:
    """One addon: ``argv`` to run, ``ready_url`` answering 200 when it serves,
    ``url`` shown to users, and ``work_dir`` (its files, removed when it stops)."""

    name: str
    argv: tuple[str, ...]
    ready_url: str
    url: str
    work_dir: Path

    def check_program(self) -> None:
        """Raise ``AddonError`` if the program cannot be found."""
        program = self.argv[0]
        if shutil.which(program) is None and not Path(program).is_file():
            raise AddonError(f"addon {self.name}: {program} not found (is it installed?)")


class AddonProcess:
    """One supervised addon (see the module docstring)."""

    def __init__(
        self,
        spec: AddonSpec,
        record_dir: Path,
        log_path: Path,
        backoff: BackoffPolicy | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self._record_dir = record_dir
        self.log_path = log_path
        self._backoff = backoff or BackoffPolicy()
        self._on_start = on_start
        self._proc: Supervised | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        self.spec.check_program()
        self.spec.work_dir.mkdir(parents=True, exist_ok=True)
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name=f"addon-{self.spec.name}")

    def _set_proc(self, proc: Supervised | None) -> None:
        self._proc = proc
        records = {"addon": proc.record()} if proc is not None else {}
        write_pid_record(self._record_dir / PIDS_FILE, self.spec.name, records)

    async def _spawn(self) -> None:
        if self._on_start is not None:
            self._on_start()
        self._set_proc(ChildProcess(await spawn(list(self.spec.argv), self.log_path)))

    async def _supervise(self) -> None:
        name = self.spec.name

        async def exited(code: int | None) -> bool:
            self._set_proc(None)
            return True

        def restarting(code: int | None, delay: float) -> None:
            self.restarts += 1
            log.warning("addon %s exited (code %s); restarting in %.1fs", name, code, delay)

        async def sleep(delay: float) -> bool:
            await asyncio.sleep(delay)
            return not self._stopping

        hooks = RestartHooks(
            current=lambda: self._proc,
            stopping=lambda: self._stopping,
            exited=exited,
            restarting=restarting,
            sleep=sleep,
            respawn=self._spawn,
            cannot_start=lambda exc: log.error("addon %s: cannot start: %s", name, exc),
        )
        await supervise_restarts(hooks, self._backoff)

    async def ready(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(self.spec.ready_url) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the addon and remove the files it wrote."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._proc is not None:
            await stop_supervised(self._proc, grace)
            self._set_proc(None)
        shutil.rmtree(self.spec.work_dir, ignore_errors=True)
        shutil.rmtree(self._record_dir, ignore_errors=True)
