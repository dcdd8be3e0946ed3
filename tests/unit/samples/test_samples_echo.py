"""The echo sample app: what it reports, how query parameters steer it, its process life."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pilotfish.samples.echo import EchoIdentity, make_app


@pytest.fixture
async def client() -> AsyncIterator[TestClient[object, object]]:
    identity = EchoIdentity(service="reviews", version="v2", hostname="pod-a", port=9080)
    async with TestClient(TestServer(make_app(identity), host="127.0.0.1")) as test_client:
        yield test_client


async def test_describes_the_request(client: TestClient[object, object]) -> None:
    resp = await client.post(
        "/some/path?a=1&b=x&b=y", data=b"hello world", headers={"X-Trace": "t1"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["service"] == "reviews"
    assert body["version"] == "v2"
    assert body["hostname"] == "pod-a"
    assert body["port"] == 9080
    assert body["method"] == "POST"
    assert body["path"] == "/some/path"
    assert body["query"] == {"a": "1", "b": "x, y"}
    assert body["headers"]["X-Trace"] == "t1"
    assert body["body_bytes"] == 11
    assert body["remote"] == "127.0.0.1"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_any_method_and_path(client: TestClient[object, object], method: str) -> None:
    resp = await client.request(method, "/")
    assert resp.status == 200
    assert (await resp.json())["method"] == method


async def test_counts_requests_per_process(client: TestClient[object, object]) -> None:
    counts = [(await (await client.get("/")).json())["count"] for _ in range(3)]
    assert counts == [1, 2, 3]


async def test_status_parameter(client: TestClient[object, object]) -> None:
    resp = await client.get("/fail?status=503")
    assert resp.status == 503
    assert (await resp.json())["path"] == "/fail"
    resp = await client.get("/?status=204")
    assert resp.status == 204
    assert await resp.read() == b""


@pytest.mark.parametrize(
    "query", ["status=abc", "status=99", "status=600", "delay=-1", "size=-1", "size=x"]
)
async def test_bad_parameters_are_400(client: TestClient[object, object], query: str) -> None:
    resp = await client.get(f"/?{query}")
    assert resp.status == 400
    assert "error" in await resp.json()


@pytest.mark.parametrize("size", [1024, 4096])
async def test_size_parameter_pads_the_body_exactly(
    client: TestClient[object, object], size: int
) -> None:
    resp = await client.get(f"/p?size={size}", headers={"X-Long": "y" * 100})
    assert resp.status == 200
    raw = await resp.read()
    assert len(raw) == size
    assert resp.headers["Content-Length"] == str(size)
    body = json.loads(raw)
    assert body["path"] == "/p" and body["query"] == {"size": str(size)}
    assert set(body["pad"]) == {"x"}


async def test_size_smaller_than_the_description_leaves_pad_empty(
    client: TestClient[object, object],
) -> None:
    resp = await client.get("/?size=10&status=503")
    assert resp.status == 503
    body = await resp.json()
    assert body["pad"] == ""
    assert len(await resp.read()) > 10


async def test_no_size_means_no_pad(client: TestClient[object, object]) -> None:
    assert "pad" not in await (await client.get("/")).json()


async def test_delay_parameter(client: TestClient[object, object]) -> None:
    started = time.monotonic()
    resp = await client.get("/?delay=300")
    elapsed = time.monotonic() - started
    assert resp.status == 200
    assert elapsed >= 0.3


def test_process_prints_its_port_serves_and_exits_cleanly_on_sigterm() -> None:
    env = {**os.environ, "HOSTNAME": "echo-host"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pilotfish.samples.echo",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--service",
            "ratings",
            "--version",
            "v1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/x?q=1", timeout=10) as resp:
            body = json.loads(resp.read())
        assert (body["service"], body["version"], body["hostname"]) == (
            "ratings",
            "v1",
            "echo-host",
        )
        assert body["port"] == port
        assert body["query"] == {"q": "1"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_websocket_echoes_messages(client: TestClient[object, object]) -> None:
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("hello")
        assert await ws.receive_str(timeout=5) == "hello"
        await ws.send_bytes(b"\x00\x01")
        assert await ws.receive_bytes(timeout=5) == b"\x00\x01"
        await ws.send_str("identity")
        assert await ws.receive_json(timeout=5) == {
            "service": "reviews",
            "version": "v2",
            "hostname": "pod-a",
        }


async def test_plain_get_of_the_websocket_path_is_described(
    client: TestClient[object, object],
) -> None:
    resp = await client.get("/ws")
    assert resp.status == 200
    assert (await resp.json())["path"] == "/ws"
