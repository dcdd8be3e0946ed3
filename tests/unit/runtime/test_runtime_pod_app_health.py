"""The agent's /app-health/<port>/ready: the app's readiness check run by its sidecar."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pilotfish.agent.admin import EnvoyAdmin
from pilotfish.agent.config import AppProbe, ConfigError, parse_app_probe
from pilotfish.agent.health import AppHealthChecker, HealthServer, ReadinessProbe
from pilotfish.runtime.ports import free_port as _free_port


@dataclass
class App:
    status: int = 503
    delay: float = 0.0
    paths: list[str] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if self.paths is not None:
            self.paths.append(request.path)
        await asyncio.sleep(self.delay)
        return web.Response(status=self.status)


@pytest.fixture
async def app() -> AsyncIterator[tuple[App, int]]:
    state = App(paths=[])
    web_app = web.Application()
    web_app.router.add_get("/{tail:.*}", state.handle)
    server = TestServer(web_app, host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    yield state, server.port
    await server.close()


@pytest.fixture
async def health(app: tuple[App, int]) -> AsyncIterator[str]:
    """A health server whose declared port 8080 is really the test app's port."""
    _, app_port = app
    free = _free_port()
    checker = AppHealthChecker(
        [AppProbe("http", 8080, "/ready"), AppProbe("tcp", 9000)],
        "127.0.0.1",
        {8080: app_port, 9000: free},
    )
    admin = EnvoyAdmin(1, timeout=0.2)
    server = HealthServer(ReadinessProbe(admin), "127.0.0.1", 0, app_health=checker)
    port = await server.start()
    yield f"http://127.0.0.1:{port}"
    await server.close()
    await admin.close()


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_http_probe_follows_the_app(app: tuple[App, int], health: str) -> None:
    state, _ = app
    status, text = await _get(f"{health}/app-health/8080/ready")
    assert (status, text) == (503, "app answered 503\n")
    state.status = 204
    assert (await _get(f"{health}/app-health/8080/ready"))[0] == 200
    state.status = 302  # kubelet counts redirects as success and does not follow them
    assert (await _get(f"{health}/app-health/8080/ready"))[0] == 200
    assert state.paths is not None and set(state.paths) == {"/ready"}


async def test_http_probe_times_out(app: tuple[App, int], health: str) -> None:
    state, _ = app
    state.status, state.delay = 200, 2.0
    status, text = await _get(f"{health}/app-health/8080/ready?timeout=0.2")
    assert status == 503 and "no answer within 0.2s" in text


async def test_tcp_probe_and_unknown_ports(health: str) -> None:
    status, text = await _get(f"{health}/app-health/9000/ready")
    assert status == 503 and "ConnectionRefusedError" in text
    assert (await _get(f"{health}/app-health/7777/ready"))[0] == 404
    assert (await _get(f"{health}/app-health/x/ready"))[0] == 400


async def test_tcp_probe_succeeds_when_listening() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    checker = AppHealthChecker([AppProbe("tcp", 80)], "127.0.0.1", {80: port})
    try:
        result = await checker.check(80)
        assert result is not None and result.ready
        assert await checker.check(81) is None
    finally:
        server.close()
        await checker.close()


@pytest.mark.parametrize(
    ("text", "probe"),
    [
        ("http:8080:/healthz", AppProbe("http", 8080, "/healthz")),
        ("http:8080", AppProbe("http", 8080, "/")),
        ("http:8080:ready?x=a:b", AppProbe("http", 8080, "/ready?x=a:b")),
        ("tcp:5432", AppProbe("tcp", 5432)),
    ],
)
def test_parse_app_probe(text: str, probe: AppProbe) -> None:
    assert parse_app_probe(text) == probe
    assert parse_app_probe(probe.flag()) == probe


@pytest.mark.parametrize("text", ["grpc:80", "http:0:/", "tcp:80:/x", "http:x:/", "tcp"])
def test_parse_app_probe_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_app_probe(text)


def test_agent_cli_rejects_a_malformed_app_probe() -> None:
    from click.testing import CliRunner

    from pilotfish.cli.agent import agent

    result = CliRunner().invoke(
        agent, ["--name", "a", "--namespace", "default", "--app-probe", "grpc:80"]
    )
    assert result.exit_code == 2
    assert "app probe must look like" in result.output
