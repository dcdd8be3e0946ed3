"""The agent's Prometheus endpoints: the proxy's on the stats port (15090), and
the merged one on the status port (15020).

Theory of operation: Envoy's admin API (loopback only) has every stat,
including Istio's metrics from the stats access logger under Envoy's
``envoy_istio_`` names, each sample's labels packed into one tag with the
labels constant for the proxy left for the agent to fill
(``pilotfish.packed_labels``). Both endpoints fetch ``/stats/prometheus`` from
it on each scrape, rename those families to Istio's and unpack their labels,
filling the proxy's own from the facts the agent has about its workload
(``agent/prom_text.py``, ``agent/workload_env.py``), so nothing is cached and
a scrape sees the counters of that moment. This runs per scrape, in the
agent, off the data path: Envoy alone carries requests, and the work it does
for metrics per request is one packed tag per stat.

``/stats/prometheus`` on the status port is Istio's metrics merging: the
proxy's metrics, then the agent's own (a private ``prometheus_client``
registry), then the app's when its Workload asks to be scraped
(``prometheus.io/scrape``, ``port``, ``path``). A source that cannot be read
is left out and counted in ``pilotfish_agent_scrape_failures_total``, so one
broken app does not hide the proxy's metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from pilotfish.agent.admin import AdminError, EnvoyAdmin
from pilotfish.agent.prom_text import istio_names, merge_expositions

__all__ = ["AgentMetrics", "MetricsServer"]

_CONTENT_TYPE = "text/plain"
_APP_TIMEOUT = 2.0


class AgentMetrics:
    """The agent's own metrics."""

    def __init__(self, envoy_starts: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.scrape_failures = Counter(
            "pilotfish_agent_scrape_failures",
            "Sources of the merged metrics that could not be read.",
            ["source"],
            registry=self.registry,
        )
        starts = Gauge(
            "pilotfish_agent_envoy_starts",
            "How many times the agent has started Envoy (1 + restarts).",
            registry=self.registry,
        )
        starts.set_function(lambda: float(envoy_starts()))

    def exposition(self) -> str:
        return generate_latest(self.registry).decode("utf-8")


class MetricsServer:
    """Serves ``/stats/prometheus`` on the stats and status ports (see the module docstring).

    ``app`` is the app's metrics URL (None: not merged). ``own`` maps the
    proxy's own variables to their values (``workload_env.workload_labels``),
    for the labels Envoy leaves to the agent. An address of None is not
    served; port 0 picks a free port; ``start()`` returns the ports bound.
    """

    def __init__(
        self,
        admin: EnvoyAdmin,
        agent_metrics: AgentMetrics,
        *,
        stats: tuple[str, int] | None,
        status: tuple[str, int] | None,
        app: str | None = None,
        own: Mapping[str, str] | None = None,
    ) -> None:
        self._admin = admin
        self._own = dict(own or {})
        self._agent = agent_metrics
        self._addresses = {"stats": stats, "status": status}
        self._app_url = app
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None

    async def _proxy_text(self) -> str:
        status, body = await self._admin.request("GET", "/stats/prometheus")
        if status != 200:
            raise AdminError(f"GET /stats/prometheus answered {status}")
        return istio_names(body, self._own)

    async def _app_text(self) -> str | None:
        if self._app_url is None:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_APP_TIMEOUT))
        try:
            async with self._session.get(self._app_url) as resp:
                if resp.status == 200:
                    return await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            pass
        self._agent.scrape_failures.labels("app").inc()
        return None

    async def _stats(self, _request: web.Request) -> web.Response:
        try:
            text = await self._proxy_text()
        except AdminError as exc:
            return web.Response(status=503, text=f"envoy: {exc}\n")
        return web.Response(text=text, content_type=_CONTENT_TYPE)

    async def _merged(self, _request: web.Request) -> web.Response:
        proxy_task = asyncio.ensure_future(self._proxy_text())
        app_text = await self._app_text()
        texts: list[str] = []
        try:
            texts.append(await proxy_task)
        except AdminError:
            self._agent.scrape_failures.labels("envoy").inc()
        texts.append(self._agent.exposition())
        if app_text is not None:
            texts.append(app_text)
        return web.Response(text=merge_expositions(texts), content_type=_CONTENT_TYPE)

    async def start(self) -> dict[str, int]:
        """Bind the endpoints; return ``{"stats": port, "status": port}`` of those served."""
        bound: dict[str, int] = {}
        try:
            for role, address in self._addresses.items():
                if address is None:
                    continue
                handler = self._stats if role == "stats" else self._merged
                app = web.Application()
                app.router.add_get("/stats/prometheus", handler)
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                await runner.setup()
                self._runners.append(runner)
                await web.TCPSite(runner, address[0], address[1], reuse_address=True).start()
                addresses = runner.addresses
                bound[role] = int(addresses[0][1]) if addresses else address[1]
        except BaseException:
            await self.close()
            raise
        return bound

    async def close(self) -> None:
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
