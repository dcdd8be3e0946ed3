"""The per-proxy agent: bootstrap, supervise and drain one Envoy.

Theory of operation:

- ``start()`` writes ``<work_dir>/bootstrap.json``, starts the readiness server,
  with a CA configured gets the first workload certificate and serves it over
  SDS (``WorkloadIdentity``; renewed in the background), and then starts Envoy
  (supervised, restarted with back-off if it dies).
- ``run_until_stopped()`` waits for SIGTERM or SIGINT (or ``request_stop()``)
  and then calls ``drain_and_stop()``; a second signal cuts the drain short.
- ``drain_and_stop()`` is the graceful shutdown Kubernetes-style callers expect:
  readiness turns 503 at once (callers stop sending new traffic), Envoy is
  asked to drain its listeners gracefully (HTTP/1 responses get
  ``Connection: close``, HTTP/2 connections get GOAWAY), the agent waits until
  Envoy reports no active downstream connections or the drain duration has
  passed, and only then stops Envoy. Connections to the admin and Prometheus
  listeners are ignored: they are ours or a scraper's, not traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import replace
from pathlib import Path

from pilotfish.agent.admin import AdminError, EnvoyAdmin
from pilotfish.agent.backoff import BackoffPolicy
from pilotfish.agent.bootstrap import STATS_STAT_PREFIX, write_bootstrap
from pilotfish.agent.config import AgentConfig
from pilotfish.agent.envoy_process import EnvoyProcess, envoy_command
from pilotfish.agent.health import AppHealthChecker, HealthServer, ReadinessProbe
from pilotfish.agent.metrics_server import AgentMetrics, MetricsServer
from pilotfish.agent.rotation import RotationPolicy
from pilotfish.agent.workload_env import envoy_environment, workload_labels
from pilotfish.agent.workload_identity import WorkloadIdentity
from pilotfish.envoy_binary import find_envoy

__all__ = ["Agent", "active_downstream_connections"]

_ACTIVE_CX_STATS = r"^(http|listener)\..*downstream_cx_active$"
_IGNORED_PREFIXES = tuple(
    f"{scope}.{prefix}."
    for scope in ("http", "listener")
    for prefix in ("admin", STATS_STAT_PREFIX)
)
_DRAIN_POLL_INTERVAL = 0.1


def active_downstream_connections(stats: dict[str, int]) -> int:
    """Largest ``downstream_cx_active`` gauge among traffic listeners and HTTP managers.

    The same connection shows up in a listener gauge and in its HTTP connection
    manager's gauge, so the maximum (not the sum) is the useful number; zero
    means nothing is in flight.
    """
    return max(
        (value for name, value in stats.items() if not name.startswith(_IGNORED_PREFIXES)),
        default=0,
    )


class Agent:
    """Runs one proxy for ``config``. Use from a single event loop."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        backoff: BackoffPolicy | None = None,
        logger: logging.Logger | None = None,
        rotation: RotationPolicy | None = None,
    ) -> None:
        self.config = config
        self._backoff = backoff
        self._rotation = rotation
        self._log = logger or logging.getLogger("pilotfish.agent")
        self._admin: EnvoyAdmin | None = None
        self._probe: ReadinessProbe | None = None
        self._health: HealthServer | None = None
        self._envoy: EnvoyProcess | None = None
        self._identity: WorkloadIdentity | None = None
        self._health_port: int | None = None
        self._metrics: MetricsServer | None = None
        self.metrics_ports: dict[str, int] = {}
        self._stop_requested = asyncio.Event()
        self._hurry = asyncio.Event()
        self._stopped = False

    @property
    def work_dir(self) -> Path:
        """Where ``bootstrap.json``, ``envoy.log`` and ``envoy.pid`` live."""
        return self.config.resolved_work_dir

    @property
    def envoy(self) -> EnvoyProcess | None:
        return self._envoy

    @property
    def identity(self) -> WorkloadIdentity | None:
        """The workload certificate machinery (None without a CA)."""
        return self._identity

    @property
    def health_port(self) -> int | None:
        """Bound port of the readiness server once started."""
        return self._health_port

    async def start(self) -> None:
        """Write the bootstrap, start readiness serving and Envoy.

        Raises ``EnvoyNotFoundError`` or ``OSError`` (port in use, cannot spawn),
        ``CaError`` / ``IdentityError`` (no certificate) after undoing whatever
        had been started.
        """
        config = self.config
        work_dir = config.resolved_work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        if config.envoy_uid is not None:
            # Envoy runs as another user: it must be able to read its bootstrap.
            work_dir.chmod(0o755)
        # The agent serves the stats port itself (Istio's metric names), so
        # Envoy's bootstrap has no Prometheus listener of its own.
        bootstrap = write_bootstrap(replace(config, stats_port=0), work_dir / "bootstrap.json")
        command = envoy_command(
            config.envoy_path or find_envoy(),
            bootstrap,
            concurrency=config.concurrency,
            log_level=config.log_level,
            drain_time=config.drain_duration,
            extra_args=config.extra_envoy_args,
        )
        self._admin = EnvoyAdmin(config.admin_port, config.admin_address)
        if config.ca_enabled:
            self._identity = WorkloadIdentity(
                config, policy=self._rotation, logger=self._log.getChild("identity")
            )
        identity = self._identity
        self._probe = ReadinessProbe(
            self._admin, gate=identity.readiness_gate if identity is not None else None
        )
        app_health = (
            AppHealthChecker(config.app_probes, config.app_address, dict(config.app_ports))
            if config.app_probes
            else None
        )
        self._health = HealthServer(
            self._probe,
            config.health_bind,
            config.health_port,
            app_health=app_health,
            identity=identity.summary if identity is not None else None,
        )
        self._envoy = EnvoyProcess(
            command,
            work_dir,
            inherit_output=config.inherit_envoy_output,
            policy=self._backoff,
            logger=self._log.getChild("envoy"),
            uid=config.envoy_uid,
            gid=config.envoy_gid,
            env=envoy_environment(config),
        )
        self._metrics = self._metrics_server(self._admin, self._envoy)
        try:
            self._health_port = await self._health.start()
            self.metrics_ports = await self._metrics.start()
            if identity is not None:
                # Envoy's xDS and mTLS clusters need the certificate: get it first.
                await identity.start()
            await self._envoy.start()
        except BaseException:
            await self._shutdown()
            raise
        self._log.info(
            "agent %s started: envoy pid %s, admin %s:%d, health %s:%d, xds %s%s %s, work dir %s",
            config.proxy_id,
            self._envoy.pid,
            config.admin_address,
            config.admin_port,
            config.health_bind,
            self._health_port,
            ",".join(f"{host}:{port}" for host, port in config.xds_targets),
            " (mTLS)" if config.xds_tls else "",
            config.xds_protocol,
            work_dir,
        )

    def _metrics_server(self, admin: EnvoyAdmin, envoy: EnvoyProcess) -> MetricsServer:
        config = self.config
        app = None
        if config.app_metrics is not None:
            port, path = config.app_metrics
            port = dict(config.app_ports).get(port, port)
            app = f"http://{config.app_address}:{port}/{path.lstrip('/')}"
        return MetricsServer(
            admin,
            AgentMetrics(lambda: envoy.starts),
            stats=(config.stats_bind, config.stats_port) if config.stats_port else None,
            status=(config.health_bind, config.status_port) if config.status_port else None,
            app=app,
            own=workload_labels(config),
        )

    def request_stop(self) -> None:
        """Ask ``run_until_stopped()`` to drain and return (safe from signal handlers)."""
        self._stop_requested.set()

    async def run_until_stopped(self) -> int:
        """Serve until SIGTERM/SIGINT or ``request_stop()``, then drain; return exit code 0."""
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                handled.append(sig)
        try:
            await self._stop_requested.wait()
            await self.drain_and_stop()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
        return 0

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop_requested.is_set():
            # A second signal means the operator does not want to wait.
            self._log.info("received %s again; stopping without waiting for connections", sig.name)
            self._hurry.set()
            return
        self._log.info("received %s; draining", sig.name)
        self.request_stop()

    async def drain_and_stop(self) -> None:
        """Turn un-ready, drain Envoy's connections (bounded by the drain duration), stop.

        Idempotent.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._probe is not None:
            self._probe.mark_draining()
        deadline = time.monotonic() + self.config.drain_duration
        if self._admin is not None and self._envoy is not None and self._envoy.pid is not None:
            try:
                await self._admin.request("POST", "/drain_listeners", {"graceful": ""})
            except AdminError as exc:
                self._log.warning("could not ask envoy to drain: %s", exc)
            remaining = await self._wait_for_idle(deadline)
            if remaining:
                self._log.warning(
                    "drain duration passed with %d connection(s) still active", remaining
                )
        await self._shutdown()
        self._log.info("agent %s stopped", self.config.proxy_id)

    async def _wait_for_idle(self, deadline: float) -> int:
        """Poll until no traffic connection is active or ``deadline``; return what is left."""
        assert self._admin is not None and self._envoy is not None
        active = -1
        while True:
            if self._envoy.pid is None:
                return 0  # Envoy is down: there is nothing left to drain.
            try:
                active = active_downstream_connections(await self._admin.stats(_ACTIVE_CX_STATS))
            except AdminError as exc:
                self._log.debug("reading connection stats failed: %s", exc)
            if active == 0:
                return 0
            if time.monotonic() >= deadline or self._hurry.is_set():
                return max(active, 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), _DRAIN_POLL_INTERVAL)

    async def _shutdown(self) -> None:
        if self._envoy is not None:
            returncode = await self._envoy.stop()
            self._log.debug("envoy exited with %s", returncode)
        if self._identity is not None:
            await self._identity.close()
        if self._health is not None:
            await self._health.close()
        if self._metrics is not None:
            await self._metrics.close()
        if self._admin is not None:
            await self._admin.close()
