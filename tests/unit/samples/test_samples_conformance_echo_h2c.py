"""The conformance echo's h2c listener: echo-basic's JSON over HTTP/2 with prior
knowledge, and 400 for a request that arrives as HTTP/1.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from h2client import H2Client
from pilotfish.runtime.ports import free_port
from pilotfish.samples.conformance_echo_h2c import serve_h2c
from polling import poll

ENV = {"POD_NAME": "infra-backend-v1-0", "NAMESPACE": "gateway-conformance-infra"}


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = await serve_h2c("127.0.0.1", 0, ENV)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _two_requests(port: int) -> list[tuple[int, dict[str, str], dict[str, object]]]:
    client = H2Client(socket.create_connection(("127.0.0.1", port), timeout=5))
    try:
        out = []
        for path, headers in (
            ("/h2c?x=1", (("x-header-add", "a"), ("X-Echo-Set-Header", "X-Answer: yes"))),
            ("/second", ()),
        ):
            answer = client.request("example.com:8081", path, "PUT", headers)
            out.append((answer.status, answer.headers, json.loads(answer.body)))
        return out
    finally:
        client.close()


async def test_answers_http2_with_echo_basic_fields_on_one_connection(port: int) -> None:
    (status, headers, body), (status2, _, body2) = await asyncio.to_thread(_two_requests, port)
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["x-answer"] == "yes"  # X-Echo-Set-Header, as on the HTTP/1.1 port
    assert body["proto"] == "HTTP/2.0"
    assert body["path"] == "/h2c?x=1" and body["method"] == "PUT"
    assert body["host"] == "example.com:8081"  # :authority, as Go's Request.Host
    assert body["pod"] == "infra-backend-v1-0"
    assert body["namespace"] == "gateway-conformance-infra"
    assert body["headers"]["X-Header-Add"] == ["a"]
    assert not any(name.startswith(":") for name in body["headers"])  # type: ignore[attr-defined]
    assert status2 == 200 and body2["path"] == "/second"


async def test_http1_request_is_refused_as_echo_basic_does(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert payload == b"Expected h2c request"


async def test_a_connection_closed_mid_preface_gets_nothing(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PRI * HTTP/2.0\r\n")
    writer.write_eof()
    assert await reader.read() == b""
    writer.close()


def test_the_echo_process_serves_h2c_on_h2c_port() -> None:
    http_port, h2c_port, https_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "HTTP_PORT": str(http_port),
        "H2C_PORT": str(h2c_port),
        "HTTPS_PORT": str(https_port),
        "POD_NAME": "infra-backend-v1-1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilotfish.samples.conformance_echo"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answer() -> dict[str, object] | None:
            try:
                client = H2Client(socket.create_connection(("127.0.0.1", h2c_port), timeout=2))
            except OSError:
                return None
            try:
                return dict(json.loads(client.request("echo", "/").body))
            finally:
                client.close()

        body = poll(answer, "the echo's h2c listener", deadline=20)
        assert body["proto"] == "HTTP/2.0" and body["pod"] == "infra-backend-v1-1"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
