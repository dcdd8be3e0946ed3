"""Gateways of the local mesh: agents with the gateway role, in the host's network.

The ingress gateway listens on the host (127.0.0.1) so a browser or curl on
the machine reaches the mesh; a Gateway server on port 8080 is published on
``--ingress-port``. The egress gateway (demo profile) listens where pods can
reach it (the bridge address in transparent mode). Each runs as
``pilotfish agent --role gateway`` and is restarted when it dies, with the
same loop and back-off as pods' processes (``restarts``).

Gateways are supervised like pods' processes (``supervised``): the agent's
pid, group and start time are kept in ``<work_dir>/<gateway>/pids.json``
(role ``agent``), so ``kill_recorded`` cleans up after a crash, and a later
supervisor can ``adopt()`` a gateway that still runs instead of starting it.
Under root it runs as the proxy user in its sandbox, like a sidecar
(``runtime.isolation``), its work dir ``<state>/pods/<gateway>/proxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp

from pilotfish.agent.backoff import BackoffPolicy
from pilotfish.agent.launch import AgentIdentity, AgentLaunch
from pilotfish.api.resource import Resource
from pilotfish.runtime.isolation import Isolation
from pilotfish.runtime.process import PIDS_FILE, PROXY_DIR, ProcessRecord, spawn, write_pid_record
from pilotfish.runtime.registration import gateway_service, workload_entry
from pilotfish.runtime.restarts import RestartHooks, supervise_restarts
from pilotfish.runtime.sandbox import sandbox_argv
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.supervised import ChildProcess, Supervised, stop_supervised

# As for confined sidecar agents (``pod_command``).
_CONFINED_INHERITED = ("LANG", "LC_ALL", "TZ", "PYTHONPATH")

__all__ = [
    "INGRESS",
    "GatewayProcess",
    "GatewaySpec",
    "egress_registrations",
    "gateway_specs",
    "ingress_registrations",
]

INGRESS = "istio-ingressgateway"
EGRESS = "istio-egressgateway"
_EGRESS_LABELS = (("app", EGRESS), ("istio", "egressgateway"))
_INGRESS_LABELS = (("app", INGRESS), ("istio", "ingressgateway"))

log = logging.getLogger("pilotfish.runtime.gateways")

_DEFAULT_BACKOFF = BackoffPolicy()  # frozen: safe to share as a default


@dataclass(frozen=True)
class GatewaySpec:
    name: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    ip: str
    admin_port: int
    health_port: int
    port_map: tuple[tuple[int, int], ...] = ()  # Gateway server port -> listen port
    # The agent's merged metrics (``:<status_port>/stats/prometheus``); 0: none.
    status_port: int = 0
    # A gateway with a network of its own (``gateway_deployments``): the agent's
    # ``--name`` when it differs from ``name`` (then the local id), the command that
    # runs it in its network namespace, and where its health and admin ports bind.
    agent_name: str = ""
    exec_prefix: tuple[str, ...] = ()
    health_bind: str | None = None
    admin_address: str | None = None

    @property
    def health_host(self) -> str:
        """Where the supervisor reaches the agent's health port."""
        bind = self.health_bind
        return bind if bind and bind != "0.0.0.0" else "127.0.0.1"


def gateway_specs(
    settings: RuntimeSettings,
    pod_host: str,
    recorded: Mapping[str, Mapping[str, Any]],
    free_port: Callable[[], int],
) -> list[GatewaySpec]:
    """The gateways of ``settings.profile``. Admin and health ports are ``recorded``
    ones (a gateway adopted from an earlier run keeps them) or fresh ``free_port()``s;
    the egress gateway listens on ``pod_host``, where pods reach the host."""

    def ports(name: str) -> tuple[int, int]:
        entry = recorded.get(name, {})
        admin = int(entry.get("admin_port") or free_port())
        return admin, int(entry.get("health_port") or free_port())

    def status_port(name: str) -> int:
        return int(recorded.get(name, {}).get("status_port") or free_port())

    if settings.profile == "minimal":
        return []
    port_map = ((8080, settings.ingress_port),)
    specs = [
        GatewaySpec(
            INGRESS,
            "istio-system",
            _INGRESS_LABELS,
            "127.0.0.1",
            *ports(INGRESS),
            port_map,
            status_port(INGRESS),
        )
    ]
    if settings.profile == "demo":
        specs.append(
            GatewaySpec(
                EGRESS,
                "istio-system",
                _EGRESS_LABELS,
                pod_host,
                *ports(EGRESS),
                status_port=status_port(EGRESS),
            )
        )
    return specs


def egress_registrations(pod_host: str) -> list[Resource]:
    """The egress gateway's Service and WorkloadEntry (demo profile)."""
    labels = dict(_EGRESS_LABELS)
    return [
        gateway_service(
            EGRESS, "istio-system", labels, [("http2", 80, 8080), ("https", 443, 8443)]
        ),
        workload_entry(EGRESS, "istio-system", pod_host, labels, f"{EGRESS}-service-account"),
    ]


def ingress_registrations() -> list[Resource]:
    """The ingress gateway's endpoint (127.0.0.1, where it listens), so the registry
    knows its address: an Ingress's ``status.loadBalancer`` lists it
    (``translate/ingress.py``). No Service selects it: nothing routes to it."""
    return [
        workload_entry(
            INGRESS,
            "istio-system",
            "127.0.0.1",
            dict(_INGRESS_LABELS),
            f"{INGRESS}-service-account",
        )
    ]


class GatewayProcess:
    def __init__(
        self,
        spec: GatewaySpec,
        xds_address: str,
        log_dir: Path,
        work_dir: Path,
        python: str,
        identity: AgentIdentity | None = None,
        service_account: str | None = None,
        on_processes_changed: Callable[[], None] | None = None,
        isolation: Isolation | None = None,
        backoff: BackoffPolicy = _DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        drain_duration: float = 2.0,
        xds_protocol: Literal["delta", "sotw"] | None = None,
        role: Literal["gateway", "node-proxy", "waypoint"] = "gateway",
        node_name: str = "",
    ) -> None:
        self.spec = spec
        # A node proxy is supervised like a gateway (``runtime.node_proxy``).
        self.role = role
        self._node_name = node_name
        self._drain = drain_duration
        self._xds_protocol = xds_protocol
        self._backoff = backoff
        self._clock = clock
        self._identity = identity
        self._service_account = service_account
        self._xds = xds_address
        self._log_path = log_dir / f"{spec.name}.log"
        self._work_dir = work_dir / spec.name  # the supervisor's: pids.json
        self._proxy_dir = self._work_dir / PROXY_DIR  # the agent's own
        self._isolation = isolation
        self._python = python
        self._proc: Supervised | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._on_processes_changed = on_processes_changed
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.running else None

    @property
    def service_account(self) -> str:
        return self._service_account or f"{self.spec.name}-service-account"

    @property
    def pids_path(self) -> Path:
        return self._work_dir / PIDS_FILE

    @property
    def record(self) -> ProcessRecord | None:
        return self._proc.record() if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self._log_path

    def launch(self) -> AgentLaunch:
        """The gateway's agent, as an ``AgentLaunch``."""
        s = self.spec
        node_proxy = self.role == "node-proxy"
        return AgentLaunch(
            role=self.role,
            node_name=self._node_name or None,
            pod_tokens_dir=str(self.pod_tokens_dir) if node_proxy else None,
            name=s.agent_name or s.name,
            namespace=s.namespace,
            service_account=self._service_account,
            ip=(s.ip,),
            xds_address=self._xds,
            admin_port=s.admin_port,
            health_port=s.health_port,
            admin_address=s.admin_address,
            health_bind=s.health_bind,
            stats_port=0,
            status_port=s.status_port or None,
            concurrency=2,
            drain_duration=self._drain,
            app_port=s.port_map,
            label=s.labels,
            work_dir=str(self._proxy_dir),
            identity=self._identity,
            xds_protocol=self._xds_protocol,
        )

    @property
    def pod_tokens_dir(self) -> Path:
        """A node proxy's: where the runtime hands over its pods' CA tokens."""
        return self._proxy_dir / "pod-tokens"

    def argv(self) -> list[str]:
        args = self.launch().to_argv([self._python, "-m", "pilotfish.cli.agent"])
        if self._isolation is not None:
            spec = self._isolation.proxy(
                self._proxy_dir, gateway=True, node_proxy=self.role == "node-proxy"
            )
            args = sandbox_argv(self._python, spec, args)
        return [*self.spec.exec_prefix, *args]

    def _env(self) -> dict[str, str] | None:
        """A confined gateway gets what a confined sidecar agent gets
        (``pod_command.agent_env``): a locale, PYTHONPATH (so it runs the same
        Pilotfish as the supervisor) and PATH, nothing else of the supervisor's."""
        if self._isolation is None:
            return None
        out = {key: os.environ[key] for key in _CONFINED_INHERITED if key in os.environ}
        out.update(PATH=os.environ.get("PATH", os.defpath), HOME="/tmp", PYTHONUNBUFFERED="1")
        return out

    async def start(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._isolation is not None:
            self._isolation.prepare_proxy_dir(self._proxy_dir)
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name=f"gateway-{self.spec.name}")

    def adopt(self, proc: Supervised, restarts: int = 0) -> None:
        """Supervise a gateway agent an earlier supervisor started (see ``supervised``)."""
        self.restarts = restarts
        self._set_proc(proc)
        log.info("gateway %s: adopted (pid %d)", self.spec.name, proc.pid)
        self._task = asyncio.create_task(self._supervise(), name=f"gateway-{self.spec.name}")

    def _set_proc(self, proc: Supervised | None) -> None:
        self._proc = proc
        records = {"agent": proc.record()} if proc is not None else {}
        write_pid_record(self.pids_path, self.spec.name, records)
        if self._on_processes_changed is not None:
            self._on_processes_changed()

    async def _spawn(self) -> None:
        self._set_proc(ChildProcess(await spawn(self.argv(), self._log_path, env=self._env())))

    async def _supervise(self) -> None:
        """Restart the agent whenever it dies, with the pods' back-off (``restarts``)."""
        name = self.spec.name

        async def exited(code: int | None) -> bool:
            self._set_proc(None)
            return True

        def restarting(code: int | None, delay: float) -> None:
            self.restarts += 1
            shown = "exit code unknown" if code is None else f"exit code {code}"
            log.warning("gateway %s exited (%s); restarting in %.1fs", name, shown, delay)

        def cannot_start(exc: OSError) -> None:
            log.error("gateway %s: cannot start: %s", name, exc)

        hooks = RestartHooks(
            current=lambda: self._proc,
            stopping=lambda: self._stopping,
            exited=exited,
            restarting=restarting,
            sleep=self._sleep_unless_stopping,
            respawn=self._spawn,
            cannot_start=cannot_start,
        )
        await supervise_restarts(hooks, self._backoff, self._clock)

    async def _sleep_unless_stopping(self, delay: float) -> bool:
        await asyncio.sleep(delay)
        return not self._stopping

    def health_url(self, path: str) -> str:
        return f"http://{self.spec.health_host}:{self.spec.health_port}{path}"

    async def ready(self, session: aiohttp.ClientSession) -> bool:
        url = self.health_url("/healthz/ready")
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
        if proc is not None:
            await stop_supervised(proc, grace)
            self._set_proc(None)
