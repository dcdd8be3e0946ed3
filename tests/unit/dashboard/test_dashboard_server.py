"""The dashboard's HTTP endpoints: errors are named, static assets ship."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

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


async def test_explain_is_501_until_wired(dashboard: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(dashboard + "/api/explain?workload=x") as resp:
        assert resp.status == 501
        assert "not available" in (await resp.json())["error"]


async def test_index_and_vendored_cytoscape_are_served(dashboard: str) -> None:
    assert (STATIC_DIR / "vendor" / "cytoscape.LICENSE").is_file()
    async with aiohttp.ClientSession() as s:
        async with s.get(dashboard + "/") as resp:
            assert resp.status == 200
            assert "/static/vendor/cytoscape.min.js" in await resp.text()
        async with s.get(dashboard + "/static/vendor/cytoscape.min.js") as resp:
            assert resp.status == 200
            assert len(await resp.read()) > 100_000
