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

The same server answers ``/app-health/<port>/ready`` for the local app, as
Istio's pilot-agent does for rewritten kubelet probes: the agent runs the
app's readiness check (HTTP GET or TCP connect) from inside the pod against
``app_address`` and the app's real port, so the caller needs neither to reach
the app directly nor to get through traffic capture or mTLS. These answers
are never cached and do not depend on Envoy or on draining.

With workload certificates, readiness also waits for the agent's ``gate``
(the certificate has been served to Envoy over SDS and ACKed), and
``GET /identity`` answers the current certificate's SPIFFE id, serial and
expiry as JSON (200), 503 before the first certificate, 404 without a CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web

from pilotfish.agent.admin import AdminError, EnvoyAdmin
from pilotfish.agent.config import AppProbe

__all__ = ["AppHealthChecker", "HealthServer", "Readiness", "ReadinessCheck", "ReadinessProbe"]

# Bounds of the per-request ``?timeout=`` of app checks, in seconds.
_APP_TIMEOUT_DEFAULT = 1.0
_APP_TIMEOUT_MAX = 60.0

_XDS_STATS = r"^(cluster_manager\.cds|listener_manager\.lds)\.update_success$"
_CDS_SUCCESS = "cluster_manager.cds.update_success"
_LDS_SUCCESS = "listener_manager.lds.update_success"


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str


class ReadinessCheck(Protocol):
    """What ``/healthz/ready`` asks (``ReadinessProbe`` for a proxy's agent)."""

    async def check(self) -> Readiness: ...


class ReadinessProbe:
    """Decides readiness from Envoy's admin API; see the module docstring."""

    def __init__(
        self,
        admin: EnvoyAdmin,
        *,
        cache_ttl: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        gate: Callable[[], str | None] | None = None,
    ) -> None:
        """``gate`` returns a reason while the agent itself is not ready, else None."""
        self._admin = admin
        self._gate = gate
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
        waiting = self._gate() if self._gate is not None else None
        if waiting is not None:
            return Readiness(False, waiting)
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


class AppHealthChecker:
    """Runs the local app's readiness checks (see the module docstring).

    ``probes`` are keyed by their declared port; ``app_ports`` maps a declared
    port to the port the app really listens on (identity when absent).
    """

    def __init__(
        self,
        probes: Iterable[AppProbe],
        app_address: str = "127.0.0.1",
        app_ports: Mapping[int, int] | None = None,
    ) -> None:
        self._probes = {probe.port: probe for probe in probes}
        self._address = app_address
        self._app_ports = dict(app_ports or {})
        self._session: aiohttp.ClientSession | None = None

    def probe_for(self, port: int) -> AppProbe | None:
        return self._probes.get(port)

    async def check(self, port: int, timeout: float = _APP_TIMEOUT_DEFAULT) -> Readiness | None:
        """Run the check declared for ``port``; None when there is none."""
        probe = self._probes.get(port)
        if probe is None:
            return None
        target = self._app_ports.get(port, port)
        try:
            async with asyncio.timeout(timeout):
                if probe.kind == "tcp":
                    return await self._tcp(target)
                return await self._http(target, probe.path)
        except TimeoutError:
            return Readiness(False, f"no answer within {timeout:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return Readiness(False, f"{type(exc).__name__}: {exc}")

    async def _tcp(self, port: int) -> Readiness:
        _, writer = await asyncio.open_connection(self._address, port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return Readiness(True, "ready")

    async def _http(self, port: int, path: str) -> Readiness:
        if self._session is None:
            # Never from the environment: the agent must reach the app directly.
            self._session = aiohttp.ClientSession(trust_env=False)
        url = f"http://{_host_for_url(self._address)}:{port}{path}"
        headers = {"User-Agent": "pilotfish-probe/1"}
        async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
            # As kubelet: any 2xx or 3xx status is a success; the body is ignored.
            ok = 200 <= resp.status < 400
            return Readiness(ok, f"app answered {resp.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _host_for_url(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class HealthServer:
    """HTTP server for ``GET /healthz/ready`` (200 ``ready`` or 503 with the reason).

    With ``app_health`` it also serves ``GET /app-health/<port>/ready[?timeout=S]``:
    200 or 503 with the reason from the app's check, 404 for a port without one.
    """

    def __init__(
        self,
        probe: ReadinessCheck,
        host: str = "127.0.0.1",
        port: int = 15021,
        app_health: AppHealthChecker | None = None,
        identity: Callable[[], Mapping[str, object] | None] | None = None,
    ) -> None:
        self._probe = probe
        self._identity = identity
        self._host = host
        self._port = port
        self._app_health = app_health
        self._runner: web.AppRunner | None = None

    async def _ready(self, request: web.Request) -> web.Response:
        result = await self._probe.check()
        return web.Response(status=200 if result.ready else 503, text=result.reason + "\n")

    async def _app_ready(self, request: web.Request) -> web.Response:
        try:
            port = int(request.match_info["port"])
            timeout = float(request.query.get("timeout", _APP_TIMEOUT_DEFAULT))
        except ValueError:
            return web.Response(status=400, text="port and timeout must be numbers\n")
        timeout = min(max(timeout, 0.05), _APP_TIMEOUT_MAX)
        result = None
        if self._app_health is not None:
            result = await self._app_health.check(port, timeout)
        if result is None:
            return web.Response(status=404, text=f"no app probe for port {port}\n")
        return web.Response(status=200 if result.ready else 503, text=result.reason + "\n")

    async def _identity_info(self, request: web.Request) -> web.Response:
        if self._identity is None:
            return web.json_response({"error": "no workload certificate configured"}, status=404)
        info = self._identity()
        if info is None:
            return web.json_response({"error": "no workload certificate yet"}, status=503)
        return web.json_response(dict(info))

    async def start(self) -> int:
        """Start listening; return the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/healthz/ready", self._ready)
        app.router.add_get("/app-health/{port}/ready", self._app_ready)
        app.router.add_get("/identity", self._identity_info)
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
        if self._app_health is not None:
            await self._app_health.close()
