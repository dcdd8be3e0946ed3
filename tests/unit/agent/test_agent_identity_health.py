"""Readiness waits for the workload certificate; `/identity` shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pilotfish.agent.admin import EnvoyAdmin
from pilotfish.agent.health import HealthServer, ReadinessProbe


@pytest.fixture
async def live_admin() -> AsyncIterator[int]:
    """An admin stand-in for a configured, live Envoy."""

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="LIVE\n")

    async def stats(request: web.Request) -> web.Response:
        return web.Response(
            text="cluster_manager.cds.update_success: 1\nlistener_manager.lds.update_success: 1\n"
        )

    app = web.Application()
    app.router.add_get("/ready", ready)
    app.router.add_get("/stats", stats)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    yield server.port
    await server.close()


async def test_gate_holds_readiness_and_identity_is_served(live_admin: int) -> None:
    waiting: list[str | None] = ["waiting for the workload certificate"]
    info: list[Mapping[str, object] | None] = [None]
    admin = EnvoyAdmin(live_admin)
    probe = ReadinessProbe(admin, cache_ttl=0.0, gate=lambda: waiting[0])
    health = HealthServer(probe, "127.0.0.1", 0, identity=lambda: info[0])
    port = await health.start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/healthz/ready") as resp:
                assert resp.status == 503
                assert "workload certificate" in await resp.text()
            async with session.get(base + "/identity") as resp:
                assert resp.status == 503
            waiting[0] = None
            info[0] = {"spiffe_id": "spiffe://cluster.local/ns/a/sa/b", "not_after": 1234}
            async with session.get(base + "/healthz/ready") as resp:
                assert resp.status == 200
            async with session.get(base + "/identity") as resp:
                assert resp.status == 200
                assert await resp.json() == {
                    "spiffe_id": "spiffe://cluster.local/ns/a/sa/b",
                    "not_after": 1234,
                }
    finally:
        await health.close()
        await admin.close()


async def test_identity_is_404_without_a_ca(live_admin: int) -> None:
    admin = EnvoyAdmin(live_admin)
    health = HealthServer(ReadinessProbe(admin), "127.0.0.1", 0)
    port = await health.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/identity") as resp,
        ):
            assert resp.status == 404
            assert "no workload certificate" in (await resp.json())["error"]
    finally:
        await health.close()
        await admin.close()
