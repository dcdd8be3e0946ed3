"""The dashboard's HTTP endpoints: errors are named, static assets ship."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pilotfish.dashboard.backends import Backends
from pilotfish.dashboard.server import STATIC_DIR, make_app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def dashboard() -> AsyncIterator[str]:
    dead = f"http://127.0.0.1:{_closed_port()}"
    runner = web.AppRunner(make_app(Backends(dead, dead, dead, None)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_unreachable_prometheus_is_a_named_502(dashboard: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(dashboard + "/api/graph") as resp:
        assert resp.status == 502
        assert "Prometheus" in (await resp.json())["error"]


async def test_bad_window_and_trace_id_are_400(dashboard: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(dashboard + "/api/graph?window=soon") as resp:
            assert resp.status == 400
        async with s.get(dashboard + "/api/trace/not-hex") as resp:
            assert resp.status == 400


async def test_explain_without_control_plane_is_a_named_502(dashboard: str) -> None:
    url = dashboard + "/api/explain?workload=x&url=http://reviews:9080/"
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        assert resp.status == 502
        assert "control plane" in (await resp.json())["error"]
    async with aiohttp.ClientSession() as s, s.get(dashboard + "/api/explain?workload=x") as resp:
        assert resp.status == 400


async def test_explain_proxies_to_the_control_plane_with_its_token(tmp_path: Path) -> None:
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    async def explain(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization", ""), list(request.query.items())))
        return web.json_response({"outcome": {"status": 404}})

    cp_app = web.Application()
    cp_app.router.add_get("/debug/explain", explain)
    cp = web.AppRunner(cp_app)
    await cp.setup()
    cp_site = web.TCPSite(cp, "127.0.0.1", 0)
    await cp_site.start()
    token = tmp_path / "api-token"
    token.write_text("secret-token\n")
    dead = f"http://127.0.0.1:{_closed_port()}"
    backends = Backends(dead, dead, f"http://127.0.0.1:{cp.addresses[0][1]}", token)
    runner = web.AppRunner(make_app(backends))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        query = (
            "workload=reviews-v1&namespace=shop&url=http%3A%2F%2Fratings%3A9080%2Fa%3Fb%3D1"
            "&method=POST&header=end-user%3A+jason&header=x-b%3A+1"
        )
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/explain?{query}"
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            assert resp.status == 200
            assert await resp.json() == {"outcome": {"status": 404}}
    finally:
        await runner.cleanup()
        await cp.cleanup()
    assert seen == [
        (
            "Bearer secret-token",
            [
                ("from", "reviews-v1.shop"),
                ("url", "http://ratings:9080/a?b=1"),
                ("method", "POST"),
                ("header", "end-user: jason"),
                ("header", "x-b: 1"),
            ],
        )
    ]


async def test_index_and_vendored_cytoscape_are_served(dashboard: str) -> None:
    assert (STATIC_DIR / "vendor" / "cytoscape.LICENSE").is_file()
    async with aiohttp.ClientSession() as s:
        async with s.get(dashboard + "/") as resp:
            assert resp.status == 200
            assert "/static/vendor/cytoscape.min.js" in await resp.text()
        async with s.get(dashboard + "/static/vendor/cytoscape.min.js") as resp:
            assert resp.status == 200
            assert len(await resp.read()) > 100_000
