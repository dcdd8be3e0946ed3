"""Runs one pod: its sidecar agent and its app, supervised, probed and stopped in order.

Theory of operation:

- ``start()`` starts the sidecar agent first and waits until its
  ``/healthz/ready`` answers 200 (Envoy is live and configured by the control
  plane); only then does it start the app, as Istio's
  ``holdApplicationUntilProxyStarts`` does, so the app's first outbound calls
  already go through a configured proxy. If the agent exits or the deadline
  passes first, everything started is stopped and ``PodStartError`` carries
  the agent's last log lines.
- Three tasks then run until ``stop()``: one waits on the app (restarting it
  per ``restartPolicy`` with back-off, or completing the pod), one waits on
  the agent (restarting it with back-off; the agent restarts Envoy itself),
  and one probes. The prober asks the sidecar's ``/healthz/ready`` about once
  a second and, if the pod has a readiness probe, the sidecar's
  ``/app-health/<port>/ready`` on the probe's schedule (``ProbeTracker``): the
  agent runs the app's check from inside the pod, as Istio rewrites kubelet
  probes, so it works under capture and mTLS alike.
- The pod is ready when running, not stopping, its app is up, its sidecar is
  ready and its probe passes (``pod_ready``). Every change of that value is
  reported once through ``on_ready_change(pod, ready)``.
- ``stop()`` turns the pod un-ready first (so the supervisor removes its
  endpoint), stops the app (SIGTERM to its group, SIGKILL after the grace
  period), then the sidecar (SIGTERM makes the agent drain and exit).
- The pids, groups and start times of both processes are kept in
  ``<work_dir>/<pod>/pids.json`` while they run, so ``kill_recorded`` can
  clean up after a supervisor that died without stopping its pods, and a
  later supervisor can take the pod over instead: ``adopt()`` (or
  ``adopt_completed()``) starts the same three tasks over processes it did
  not spawn (``supervised.AdoptedProcess``: watched through a pidfd, exit
  code unknown, counted as a failure by ``restartPolicy``). It probes the
  pod once before returning, so the supervisor can register a ready pod
  before its control plane serves any proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from pilotfish.agent.backoff import BackoffPolicy
from pilotfish.runtime.container_app import prepare_container, remove_pod_container
from pilotfish.runtime.pod_command import (
    PodEnv,
    agent_argv,
    agent_env,
    allocate_app_ports,
    app_argv,
    app_env,
    compile_ambient_pod,
)
from pilotfish.runtime.pod_lifecycle import (
    Phase,
    PodStatus,
    completion_phase,
    pod_ready,
    should_restart,
)
from pilotfish.runtime.pod_spec import PodSpec, PortSpec, ProbeSpec
from pilotfish.runtime.probes import ProbeTracker
from pilotfish.runtime.process import (
    PIDS_FILE,
    ProcessRecord,
    kill_recorded,
    spawn,
    write_pid_record,
)
from pilotfish.runtime.restarts import RestartHooks, supervise_restarts
from pilotfish.runtime.supervised import ChildProcess, Supervised, stop_supervised

# The runner's collaborators are re-exported so callers need one import.
__all__ = [
    "Phase",
    "PodEnv",
    "PodRunner",
    "PodSpec",
    "PodStartError",
    "PodStatus",
    "PortSpec",
    "ProbeSpec",
    "kill_recorded",
]

_SIDECAR_CHECK_PERIOD = 1.0
_SIDECAR_CHECK_TIMEOUT = 1.0
_START_POLL_INTERVAL = 0.1
_LOG_TAIL_LINES = 20
# Exit code reported for an app that could not be started at all (as shells do).
_SIDECAR = "sidecar"
_APP = "app"
_DEFAULT_BACKOFF = BackoffPolicy()  # frozen: safe to share as a default


class PodStartError(RuntimeError):
    """The pod's sidecar did not become ready; the message says why."""


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class PodRunner:
    """Runs the processes of one pod. Use from a single event loop.

    ``on_ready_change(pod_name, ready)`` is called from the event loop on every
    readiness transition; it must not block (exceptions are logged and ignored).
    """

    def __init__(
        self,
        spec: PodSpec,
        env: PodEnv,
        on_ready_change: Callable[[str, bool], None],
        backoff: BackoffPolicy = _DEFAULT_BACKOFF,
        *,
        logger: logging.Logger | None = None,
        on_processes_changed: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.env = env
        self._on_ready_change = on_ready_change
        # Called after every change of the recorded processes (spawn, exit, completion).
        self._on_processes_changed = on_processes_changed
        self._backoff = backoff
        self._log = logger or logging.getLogger("pilotfish.runtime.pod")
        self._phase: Phase = "Pending"
        self._ready = False
        self._sidecar_ready = False
        self._restarts = 0
        self._last_exit_code: int | None = None
        self._message = ""
        self._started_at: float | None = None
        self._app: Supervised | None = None
        self._sidecar: Supervised | None = None
        self._records: dict[str, ProcessRecord] = {}
        self._app_ports: dict[int, int] = {}
        self._tracker: ProbeTracker | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._began = False
        self._stopping = False
        self._stopped = False
        self._stop_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._completed = asyncio.Event()
        self._sidecar_done = False  # stopped on purpose (pod completed or stopping)

    # -- public -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def app_ports(self) -> dict[int, int]:
        """Container port -> the port the app really listens on (after ``start()``)."""
        return dict(self._app_ports)

    @property
    def records(self) -> dict[str, ProcessRecord]:
        """role (``sidecar``, ``app``) -> the running process's record."""
        return dict(self._records)

    @property
    def pids_path(self) -> Path:
        return self.env.pod_dir(self.spec.local_id) / PIDS_FILE

    def status(self) -> PodStatus:
        return PodStatus(
            name=self.spec.name,
            workload=self.spec.workload,
            namespace=self.spec.namespace,
            ip=self.env.address.ip,
            phase=self._phase,
            ready=self._ready,
            restarts=self._restarts,
            sidecar_ready=self._sidecar_ready,
            app_pid=_pid(self._app),
            sidecar_pid=_pid(self._sidecar),
            started_at=self._started_at,
            last_exit_code=self._last_exit_code,
            message=self._message,
        )

    async def start(self) -> None:
        """Start the sidecar, wait for it to be ready, then start the app.

        Raises ``PodStartError`` (phase ``Failed``, nothing left running) if the
        sidecar exits or is not ready within ``env.sidecar_start_timeout``, or if
        ``stop()`` is called meanwhile. Call at most once.
        """
        if self._began:
            raise RuntimeError(f"pod {self.name} was already started")
        self._began = True
        self._started_at = time.time()
        self.env.pod_dir(self.spec.local_id).mkdir(parents=True, exist_ok=True)
        if self.env.isolation is not None:
            self.env.isolation.prepare_proxy_dir(self.env.proxy_dir(self.spec.local_id))
        Path(self.env.log_dir).mkdir(parents=True, exist_ok=True)
        self._app_ports = allocate_app_ports(self.spec, self.env)
        self._session = aiohttp.ClientSession(trust_env=False)
        try:
            await self._spawn_sidecar()
            await self._wait_sidecar_ready()
        except BaseException as exc:
            self._phase = "Failed"
            self._completed.set()
            if isinstance(exc, PodStartError | OSError):
                self._message = str(exc)
            await self._stop_processes(grace=2.0)
            await self._close_session()
            if isinstance(exc, OSError):
                raise PodStartError(f"pod {self.name}: cannot start the sidecar: {exc}") from exc
            raise
        self._sidecar_ready = True
        self._phase = "Running"
        await self._spawn_app()
        if self._stopping:
            # stop() ran while the app was being spawned and could not see it.
            await self._stop_processes(grace=2.0)
            return
        self._start_tasks()
        self._update_ready()

    async def adopt(
        self,
        sidecar: Supervised,
        app: Supervised | None,
        *,
        app_ports: dict[int, int],
        restarts: int = 0,
        started_at: float | None = None,
    ) -> bool:
        """Take over a running pod an earlier supervisor started; True if it answered ready.

        ``sidecar`` and ``app`` were checked by the caller (recorded start times);
        ``app_ports`` are the ports recorded for the run. Without a live app, one
        is started (a restart) unless ``restartPolicy`` says the pod completes.
        The sidecar and the app's readiness probe are asked once before this
        returns; a probe passing then carries the run's readiness over. Then
        the pod is supervised exactly as after ``start()``. Call at most once,
        instead of ``start()``.
        """
        if self._began:
            raise RuntimeError(f"pod {self.name} was already started")
        self._began = True
        self._started_at = started_at if started_at is not None else time.time()
        self._restarts = restarts
        self._app_ports = dict(app_ports)
        self._session = aiohttp.ClientSession(trust_env=False)
        self._sidecar = sidecar
        self._record(_SIDECAR, sidecar)
        self._phase = "Running"
        self._sidecar_ready = await self._get_ok(
            self.env.health_url("/healthz/ready"), _SIDECAR_CHECK_TIMEOUT
        )
        if app is not None and app.running:
            self._app = app
            self._record(_APP, app)
            if self.spec.readiness is not None:
                self._tracker = ProbeTracker(self.spec.readiness, time.monotonic())
                self._tracker.resume(await self._probe_app(), time.monotonic())
        elif should_restart(self.spec.restart_policy, None):
            # Started in the background: a sidecar that is not ready may need the
            # control plane, which the supervisor starts only after adoption.
            self._message = "app was not running when the pod was adopted; restarting it"
            self._start_tasks(app=self._restart_app_when_sidecar_ready())
            self._update_ready()
            return False
        else:
            await self._complete(None)
            return False
        self._log.info("pod %s: adopted (sidecar pid %d)", self.name, sidecar.pid)
        self._start_tasks()
        self._update_ready()
        return self._ready

    async def _restart_app_when_sidecar_ready(self) -> None:
        """An adopted pod without its app: as at start, the app only runs behind a
        ready sidecar (the probe loop and the sidecar watcher keep it going)."""
        while not self._sidecar_ready:
            if not await self._sleep_unless_stopping(_START_POLL_INTERVAL):
                return
        self._restarts += 1
        await self._spawn_app()
        self._update_ready()
        await self._watch_app()

    def adopt_completed(self, phase: Phase, message: str, restarts: int = 0) -> None:
        """Take over a pod that had completed (no process left): it stays completed."""
        if self._began:
            raise RuntimeError(f"pod {self.name} was already started")
        self._began = True
        self._started_at = time.time()
        self._phase = phase
        self._message = message
        self._restarts = restarts
        self._sidecar_done = True
        self._completed.set()

    def _start_tasks(self, app: Coroutine[Any, Any, None] | None = None) -> None:
        self._tasks = [
            asyncio.create_task(app or self._watch_app(), name=f"pod-{self.name}-app"),
            asyncio.create_task(self._watch_sidecar(), name=f"pod-{self.name}-sidecar"),
            asyncio.create_task(self._probe_loop(), name=f"pod-{self.name}-probes"),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Un-ready first, then stop the app, then the sidecar (each: SIGTERM, SIGKILL after
        ``grace`` s). Idempotent; returns when no process of the pod is left."""
        async with self._stop_lock:
            if self._stopped:
                return
            self._stopping = True
            self._stop_event.set()
            self._wake.set()
            self._update_ready()
            current = asyncio.current_task()
            tasks = [t for t in self._tasks if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_processes(grace)
            await self._close_session()
            self._stopped = True
            self._completed.set()

    async def wait_completed(self) -> Phase:
        """Wait until the pod has completed (``Succeeded``/``Failed``) or was stopped."""
        await self._completed.wait()
        return self._phase

    # -- processes ----------------------------------------------------------

    async def _spawn_sidecar(self) -> None:
        if self.env.ambient or self.env.out_of_mesh:
            compile_ambient_pod()
        argv = agent_argv(self.spec, self.env, self._app_ports)
        proc = ChildProcess(
            await spawn(argv, self.env.sidecar_log(self.spec.local_id), env=agent_env(self.env))
        )
        self._sidecar = proc
        self._record(_SIDECAR, proc)
        self._log.info("pod %s: sidecar agent started (pid %d)", self.name, proc.pid)

    async def _spawn_app(self) -> None:
        """Start the app; a failure to start is handled like an immediate exit."""
        if self.spec.readiness is not None:
            self._tracker = ProbeTracker(self.spec.readiness, time.monotonic())
        try:
            argv, env = await self._app_launch()
            proc = ChildProcess(await spawn(argv, self.env.app_log(self.spec.local_id), env=env))
        except (OSError, ValueError) as exc:
            self._app = None
            self._message = f"cannot start the app: {exc}"
            self._log.warning("pod %s: %s", self.name, self._message)
            return
        self._app = proc
        self._record(_APP, proc)
        self._log.info("pod %s: app started (pid %d)", self.name, proc.pid)
        self._wake.set()

    async def _app_launch(self) -> tuple[list[str], dict[str, str]]:
        """The app's command line and environment: a local command, or ``podman run``
        when the app is a container image (``runtime.container_app``)."""
        if self.spec.container is not None:
            return await prepare_container(self.spec, self.env, self._app_ports)
        return app_argv(self.spec, self.env), app_env(self.spec, self.env, self._app_ports)

    def _record(self, role: str, proc: Supervised | None) -> None:
        if proc is None:
            self._records.pop(role, None)
        else:
            self._records[role] = proc.record()
        write_pid_record(self.pids_path, self.spec.local_id, self._records)
        if self._on_processes_changed is not None:
            try:
                self._on_processes_changed()
            except Exception:
                self._log.exception("pod %s: on_processes_changed failed", self.name)

    async def _stop_processes(self, grace: float) -> None:
        if self._app is not None:
            code = await stop_supervised(self._app, grace)
            self._log.info("pod %s: app stopped (exit code %s)", self.name, code)
            self._app = None
            self._record(_APP, None)
        await remove_pod_container(self.spec, self.env)
        await self._stop_sidecar(grace)

    async def _stop_sidecar(self, grace: float) -> None:
        self._sidecar_done = True
        self._sidecar_ready = False
        if self._sidecar is not None:
            code = await stop_supervised(self._sidecar, grace)
            self._log.info("pod %s: sidecar stopped (exit code %s)", self.name, code)
            self._sidecar = None
            self._record(_SIDECAR, None)

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- supervision --------------------------------------------------------

    async def _wait_wake(self, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _sleep_unless_stopping(self, delay: float) -> bool:
        """Sleep ``delay`` s; False if the pod started stopping meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), delay)
        return not self._stopping

    async def _watch_app(self) -> None:
        async def exited(code: int | None) -> bool:
            self._app = None
            self._tracker = None
            self._last_exit_code = code
            self._record(_APP, None)
            self._update_ready()
            await remove_pod_container(self.spec, self.env)
            if not should_restart(self.spec.restart_policy, code):
                await self._complete(code)
                return False
            return True

        def restarting(code: int | None, delay: float) -> None:
            shown = "unknown (not a child of this supervisor)" if code is None else str(code)
            self._message = f"app exited with code {shown}; restarting in {delay:.1f}s"
            self._log.warning("pod %s: %s", self.name, self._message)

        async def respawn() -> None:
            self._restarts += 1
            await self._spawn_app()  # a failure to start is handled like an exit
            self._update_ready()

        hooks = RestartHooks(
            current=lambda: self._app,
            stopping=lambda: self._stopping,
            exited=exited,
            restarting=restarting,
            sleep=self._sleep_unless_stopping,
            respawn=respawn,
            cannot_start=self._cannot_start_app,
        )
        await supervise_restarts(hooks, self._backoff)

    def _cannot_start_app(self, exc: OSError) -> None:
        self._message = f"cannot start the app: {exc}"
        self._log.error("pod %s: %s", self.name, self._message)

    async def _complete(self, code: int | None) -> None:
        """The app exited for good: record the phase and drain the sidecar away."""
        self._phase = completion_phase(code)
        shown = "unknown (not a child of this supervisor)" if code is None else str(code)
        self._message = f"app exited with code {shown}"
        self._log.info("pod %s: completed (%s): %s", self.name, self._phase, self._message)
        self._update_ready()
        await self._stop_sidecar(grace=10.0)
        self._wake.set()
        self._completed.set()

    async def _watch_sidecar(self) -> None:
        async def exited(code: int | None) -> bool:
            self._sidecar = None
            self._sidecar_ready = False
            self._record(_SIDECAR, None)
            self._update_ready()
            return True

        def restarting(code: int | None, delay: float) -> None:
            shown = "unknown" if code is None else str(code)
            self._message = f"sidecar agent exited with code {shown}; restarting in {delay:.1f}s"
            self._log.warning("pod %s: %s", self.name, self._message)

        async def sleep(delay: float) -> bool:
            return await self._sleep_unless_stopping(delay) and not self._sidecar_done

        def cannot_start(exc: OSError) -> None:
            self._message = f"cannot start the sidecar agent: {exc}"
            self._log.error("pod %s: %s", self.name, self._message)

        hooks = RestartHooks(
            current=lambda: self._sidecar,
            stopping=lambda: self._stopping or self._sidecar_done,
            exited=exited,
            restarting=restarting,
            sleep=sleep,
            respawn=self._spawn_sidecar,
            cannot_start=cannot_start,
        )
        await supervise_restarts(hooks, self._backoff)

    async def _probe_loop(self) -> None:
        while not self._stopping and not self._sidecar_done:
            now = time.monotonic()
            ok = await self._get_ok(self.env.health_url("/healthz/ready"), _SIDECAR_CHECK_TIMEOUT)
            # The sidecar may have been stopped or died while we were asking.
            self._sidecar_ready = ok and self._sidecar is not None and not self._sidecar_done
            tracker = self._tracker
            if tracker is not None and self._app is not None and tracker.due(now):
                ok = await self._probe_app()
                # A result for an app run that has since ended is dropped.
                if tracker is self._tracker:
                    tracker.record(ok, now)
            self._update_ready()
            wake_at = now + _SIDECAR_CHECK_PERIOD
            if self._tracker is not None:
                wake_at = min(wake_at, self._tracker.next_due)
            self._wake.clear()
            await self._wait_wake(max(0.0, wake_at - time.monotonic()))

    async def _probe_app(self) -> bool:
        """Ask the sidecar to run the app's readiness check once."""
        assert self.spec.readiness is not None
        probe = self.spec.readiness
        return await self._get_ok(
            self.env.health_url(
                f"/app-health/{probe.port}/ready?timeout={probe.timeout_seconds:g}"
            ),
            # The agent bounds the check itself; leave it time to answer.
            probe.timeout_seconds + 1.0,
        )

    async def _get_ok(self, url: str, timeout: float) -> bool:
        if self._session is None:
            return False
        try:
            client_timeout = aiohttp.ClientTimeout(total=timeout)
            async with self._session.get(url, timeout=client_timeout) as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _wait_sidecar_ready(self) -> None:
        deadline = time.monotonic() + self.env.sidecar_start_timeout
        url = self.env.health_url("/healthz/ready")
        log_path = self.env.sidecar_log(self.spec.local_id)
        while True:
            if self._stopping:
                raise PodStartError(f"pod {self.name}: stopped while starting")
            proc = self._sidecar
            if proc is None or not proc.running:
                code = proc.exit_code if proc is not None else None
                raise PodStartError(
                    f"pod {self.name}: sidecar agent exited with code {code} before it was "
                    f"ready; last lines of {log_path}:\n{_tail(log_path)}"
                )
            if await self._get_ok(url, _SIDECAR_CHECK_TIMEOUT):
                return
            if time.monotonic() >= deadline:
                raise PodStartError(
                    f"pod {self.name}: sidecar not ready after "
                    f"{self.env.sidecar_start_timeout:g}s; last lines of {log_path}:\n"
                    f"{_tail(log_path)}"
                )
            await self._sleep_unless_stopping(_START_POLL_INTERVAL)

    def _update_ready(self) -> None:
        tracker = self._tracker
        ready = pod_ready(
            phase=self._phase,
            stopping=self._stopping,
            app_running=self._app is not None and self._app.running,
            sidecar_ready=self._sidecar_ready,
            probe_ready=tracker.ready if tracker is not None else self.spec.readiness is None,
        )
        if ready == self._ready:
            return
        self._ready = ready
        self._log.info("pod %s: %s", self.name, "ready" if ready else "not ready")
        try:
            self._on_ready_change(self.name, ready)
        except Exception:
            self._log.exception("pod %s: on_ready_change failed", self.name)


def _pid(proc: Supervised | None) -> int | None:
    return proc.pid if proc is not None and proc.running else None
