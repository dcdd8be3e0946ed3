"""Gateways of the local mesh: agents with the gateway role, in the host's network.

The ingress gateway listens on the host (127.0.0.1) so a browser or curl on
the machine reaches the mesh; a Gateway server on port 8080 is published on
``--ingress-port``. The egress gateway (demo profile) listens where pods can
reach it (the bridge address in transparent mode). Each runs as
``pilotfish agent --role gateway`` and is restarted with backoff if it dies.
Under root it runs as the proxy user in its sandbox, like a sidecar
(``runtime.isolation``), its work dir ``<state>/pods/<gateway>/proxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from pilotfish.agent.backoff import BackoffPolicy, restart_delay
from pilotfish.runtime.isolation import Isolation
from pilotfish.runtime.process import PROXY_DIR
from pilotfish.runtime.sandbox import sandbox_argv

__all__ = ["GatewayProcess", "GatewaySpec"]

log = logging.getLogger("pilotfish.runtime.gateways")


@dataclass(frozen=True)
class GatewaySpec:
    name: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    ip: str
    admin_port: int
    health_port: int
    port_map: tuple[tuple[int, int], ...] = ()  # Gateway server port -> listen port


class GatewayProcess:
    def __init__(
        self,
        spec: GatewaySpec,
        xds_address: str,
        log_dir: Path,
        work_dir: Path,
        python: str,
        extra_args: tuple[str, ...] = (),
        isolation: Isolation | None = None,
    ) -> None:
        self.spec = spec
        self._extra_args = extra_args
        self._xds = xds_address
        self._log_path = log_dir / f"{spec.name}.log"
        self._work_dir = work_dir / spec.name / PROXY_DIR
        self._isolation = isolation
        self._python = python
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self._log_path

    def argv(self) -> list[str]:
        s = self.spec
        args = [
            self._python,
            "-m",
            "pilotfish.cli.agent",
            "--role",
            "gateway",
            "--name",
            s.name,
            "--namespace",
            s.namespace,
            "--ip",
            s.ip,
            "--xds-address",
            self._xds,
            "--admin-port",
            str(s.admin_port),
            "--health-port",
            str(s.health_port),
            "--stats-port",
            "0",
            "--concurrency",
            "2",
            "--drain-duration",
            "2",
            "--work-dir",
            str(self._work_dir),
        ]
        for k, v in s.labels:
            args += ["--label", f"{k}={v}"]
        for server_port, listen_port in s.port_map:
            args += ["--app-port", f"{server_port}={listen_port}"]
        args += self._extra_args
        if self._isolation is not None:
            spec = self._isolation.proxy(self._work_dir, gateway=True)
            args = sandbox_argv(self._python, spec, args)
        return args

    async def start(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._isolation is not None:
            self._isolation.prepare_proxy_dir(self._work_dir)
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name=f"gateway-{self.spec.name}")

    async def _spawn(self) -> None:
        env = None
        if self._isolation is not None:
            env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": "/tmp"}
            env["PYTHONUNBUFFERED"] = "1"
        with open(self._log_path, "ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    async def _supervise(self) -> None:
        failures = 0
        policy = BackoffPolicy()
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            failures += 1
            self.restarts += 1
            delay = restart_delay(policy, failures)
            log.warning("gateway %s exited (%s); restarting in %.1fs", self.spec.name, code, delay)
            await asyncio.sleep(delay)
            if not self._stopping:
                await self._spawn()

    async def ready(self, session: aiohttp.ClientSession) -> bool:
        url = f"http://127.0.0.1:{self.spec.health_port}/healthz/ready"
        try:
            async with session.get(url) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def stop(self, grace: float = 10.0) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
