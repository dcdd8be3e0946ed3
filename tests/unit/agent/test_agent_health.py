"""Readiness decisions, against a stand-in for Envoy's admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pilotfish.agent.admin import EnvoyAdmin, parse_stats
from pilotfish.agent.agent import active_downstream_connections
from pilotfish.agent.health import HealthServer, ReadinessProbe


@dataclass
class FakeAdmin:
    """Answers /ready and /stats like Envoy's admin does."""

    state: str = "PRE_INITIALIZING"
    stats: dict[str, int] = field(default_factory=dict)
    requests: int = 0

    async def ready(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(status=200 if self.state == "LIVE" else 503, text=self.state + "\n")

    async def stats_handler(self, request: web.Request) -> web.Response:
        import re

        pattern = re.compile(request.query.get("filter", ""))
        lines = [f"{k}: {v}" for k, v in sorted(self.stats.items()) if pattern.search(k)]
        lines.append("cluster_manager.some_histogram: P0(nan,1) P25(nan,2)")
        return web.Response(text="\n".join(lines) + "\n")


@pytest.fixture
async def fake_admin() -> AsyncIterator[tuple[FakeAdmin, int]]:
    fake = FakeAdmin()
    app = web.Application()
    app.router.add_get("/ready", fake.ready)
    app.router.add_get("/stats", fake.stats_handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    yield fake, server.port
    await server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_readiness_follows_envoy_state_and_xds_counters(
    fake_admin: tuple[FakeAdmin, int],
) -> None:
    fake, port = fake_admin
    admin = EnvoyAdmin(port)
    clock = Clock()
    probe = ReadinessProbe(admin, cache_ttl=1.0, clock=clock)
    try:
        result = await probe.check()
        assert (result.ready, result.reason) == (False, "envoy is not live: PRE_INITIALIZING")

        fake.state = "LIVE"
        clock.now += 2
        result = await probe.check()
        assert not result.ready
        assert result.reason == "waiting for clusters and listeners from xDS"

        fake.stats = {"cluster_manager.cds.update_success": 1}
        clock.now += 2
        assert (await probe.check()).reason == "waiting for listeners from xDS"

        fake.stats["listener_manager.lds.update_success"] = 2
        clock.now += 2
        result = await probe.check()
        assert (result.ready, result.reason) == (True, "ready")
    finally:
        await admin.close()


async def test_answers_are_cached_briefly(fake_admin: tuple[FakeAdmin, int]) -> None:
    fake, port = fake_admin
    admin = EnvoyAdmin(port)
    clock = Clock()
    probe = ReadinessProbe(admin, cache_ttl=1.0, clock=clock)
    try:
        await probe.check()
        await probe.check()
        assert fake.requests == 1
        clock.now += 1.5
        await probe.check()
        assert fake.requests == 2
    finally:
        await admin.close()


async def test_draining_is_unready_without_asking_envoy(
    fake_admin: tuple[FakeAdmin, int],
) -> None:
    fake, port = fake_admin
    fake.state = "LIVE"
    fake.stats = {"cluster_manager.cds.update_success": 1, "listener_manager.lds.update_success": 1}
    admin = EnvoyAdmin(port)
    probe = ReadinessProbe(admin, cache_ttl=60.0)
    try:
        assert (await probe.check()).ready
        probe.mark_draining()
        result = await probe.check()
        assert (result.ready, result.reason) == (False, "draining")
        assert probe.draining
    finally:
        await admin.close()


async def test_unreachable_admin_is_unready() -> None:
    admin = EnvoyAdmin(1, timeout=0.5)  # nothing listens on port 1
    try:
        result = await ReadinessProbe(admin).check()
        assert not result.ready
        assert result.reason.startswith("envoy admin unreachable")
    finally:
        await admin.close()


async def test_health_server_serves_readiness_over_http(
    fake_admin: tuple[FakeAdmin, int],
) -> None:
    fake, port = fake_admin
    admin = EnvoyAdmin(port)
    probe = ReadinessProbe(admin, cache_ttl=0.0)
    health = HealthServer(probe, "127.0.0.1", 0)
    health_port = await health.start()
    url = f"http://127.0.0.1:{health_port}/healthz/ready"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 503
                assert "PRE_INITIALIZING" in await resp.text()
            fake.state = "LIVE"
            fake.stats = {
                "cluster_manager.cds.update_success": 1,
                "listener_manager.lds.update_success": 1,
            }
            async with session.get(url) as resp:
                assert resp.status == 200
                assert await resp.text() == "ready\n"
            probe.mark_draining()
            async with session.get(url) as resp:
                assert resp.status == 503
                assert await resp.text() == "draining\n"
    finally:
        await health.close()
        await admin.close()


def test_parse_stats_skips_histograms() -> None:
    text = "a.b: 3\nhttp.x.y: 0\nh: P0(nan,1) P25(nan,2)\n\ngarbage\n"
    assert parse_stats(text) == {"a.b": 3, "http.x.y": 0}


def test_active_connections_ignore_admin_and_stats_listeners() -> None:
    stats = {
        "http.admin.downstream_cx_active": 3,
        "listener.admin.downstream_cx_active": 3,
        "listener.admin.main_thread.downstream_cx_active": 3,
        "http.prometheus_stats.downstream_cx_active": 1,
        "listener.prometheus_stats.downstream_cx_active": 1,
        "http.inbound_0.0.0.0_15006.downstream_cx_active": 0,
        "listener.0.0.0.0_15006.downstream_cx_active": 0,
    }
    assert active_downstream_connections(stats) == 0
    stats["listener.0.0.0.0_15006.worker_1.downstream_cx_active"] = 2
    assert active_downstream_connections(stats) == 2
    assert active_downstream_connections({}) == 0
