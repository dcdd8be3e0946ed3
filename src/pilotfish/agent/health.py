"""Readiness of the proxy, served on ``/healthz/ready``.

Theory of operation: a proxy is ready when Envoy is up *and* has been
configured by the control plane, i.e. when all of these hold:

1. the agent is not draining (draining answers 503 at once, uncached);
2. Envoy's admin ``/ready`` answers 200 (server state ``LIVE``);
3. Envoy's stats show at least one successful CDS update and one successful
   LDS update (``cluster_manager.cds.update_success`` and
   ``listener_manager.lds.update_success``). After an Envoy restart these
   counters start again from zero, so a restarted proxy is un-ready until the
   control plane has configured it again.

Answers are cached for ``cache_ttl`` seconds and concurrent probes share one
in-flight check, so aggressive probing never loads Envoy's admin thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from pilotfish.agent.admin import AdminError, EnvoyAdmin

__all__ = ["HealthServer", "Readiness", "ReadinessProbe"]

_XDS_STATS = r"^(cluster_manager\.cds|listener_manager\.lds)\.update_success$"
_CDS_SUCCESS = "cluster_manager.cds.update_success"
_LDS_SUCCESS = "listener_manager.lds.update_success"


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str


class ReadinessProbe:
    """Decides readiness from Envoy's admin API; see the module docstring."""

    def __init__(
        self,
        admin: EnvoyAdmin,
        *,
        cache_ttl: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = admin
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._draining = False
        self._cached: tuple[float, Readiness] | None = None
        self._lock = asyncio.Lock()

    @property
    def draining(self) -> bool:
        return self._draining

    def mark_draining(self) -> None:
        """From now on, always un-ready."""
        self._draining = True

    async def check(self) -> Readiness:
        if self._draining:
            return Readiness(False, "draining")
        async with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_ttl:
                return self._cached[1]
            result = await self._check_envoy()
            self._cached = (self._clock(), result)
        # Draining may have started while we were asking Envoy.
        return Readiness(False, "draining") if self._draining else result

    async def _check_envoy(self) -> Readiness:
        try:
            status, body = await self._admin.request("GET", "/ready")
            if status != 200:
                return Readiness(False, f"envoy is not live: {body.strip() or status}")
            stats = await self._admin.stats(_XDS_STATS)
        except AdminError as exc:
            return Readiness(False, f"envoy admin unreachable: {exc}")
        missing = [
            what
            for what, stat in (("clusters", _CDS_SUCCESS), ("listeners", _LDS_SUCCESS))
            if stats.get(stat, 0) < 1
        ]
        if missing:
            return Readiness(False, f"waiting for {' and '.join(missing)} from xDS")
        return Readiness(True, "ready")


class HealthServer:
    """HTTP server for ``GET /healthz/ready`` (200 ``ready`` or 503 with the reason)."""

    def __init__(self, probe: ReadinessProbe, host: str = "127.0.0.1", port: int = 15021) -> None:
        self._probe = probe
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    async def _ready(self, request: web.Request) -> web.Response:
        result = await self._probe.check()
        return web.Response(status=200 if result.ready else 503, text=result.reason + "\n")

    async def start(self) -> int:
        """Start listening; return the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/healthz/ready", self._ready)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        return int(addresses[0][1]) if addresses else self._port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
