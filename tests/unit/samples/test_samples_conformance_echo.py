"""The conformance echo backend answers with upstream echo-basic's JSON fields."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509

from pilotfish.runtime.image_map import load_image_map
from pilotfish.runtime.ports import free_port
from pilotfish.samples.conformance_echo import MAX_DELAY, canonical_header, delay_of, make_app
from pki import TestCa
from polling import poll

ENV = {"POD_NAME": "infra-backend-v1-0", "NAMESPACE": "gateway-conformance-infra"}


@pytest.fixture
async def client() -> AsyncIterator[TestClient[object, object]]:
    async with TestClient(TestServer(make_app(ENV), host="127.0.0.1")) as test_client:
        yield test_client


async def test_answers_with_echo_basic_fields(client: TestClient[object, object]) -> None:
    # Raw bytes: a repeated header reaches the server as two lines, as from Envoy.
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"PATCH /v2/example?animal=whale&x=1 HTTP/1.1\r\nHost: foo.bar.com:1234\r\n"
        b"x-header-add: a\r\nX-Header-Add: b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    body = json.loads(payload)
    assert set(body) == {
        "path", "host", "method", "proto", "headers", "namespace", "ingress", "service", "pod"
    }  # fmt: skip
    assert body["path"] == "/v2/example?animal=whale&x=1"
    assert body["host"] == "foo.bar.com:1234"
    assert body["method"] == "PATCH"
    assert body["proto"] == "HTTP/1.1"
    assert body["pod"] == "infra-backend-v1-0"
    assert body["namespace"] == "gateway-conformance-infra"
    # Go's canonical names, every value kept, Host not among the headers.
    assert body["headers"]["X-Header-Add"] == ["a", "b"]
    assert "Host" not in body["headers"]


async def test_logs_each_request_as_echo_basic_does(
    client: TestClient[object, object], capsys: pytest.CaptureFixture[str]
) -> None:
    resp = await client.get("/mirror?gateway-api-conformance-request-id=42")
    assert resp.status == 200
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith(
            "Echoing back request made to /mirror?gateway-api-conformance-request-id=42 to client ("
        )
        for line in lines
    ), lines


def test_delay_is_a_go_duration() -> None:
    assert delay_of("1s") == 1.0
    assert delay_of("500ms") == 0.5
    assert delay_of("1m30s") == min(90.0, MAX_DELAY)
    assert delay_of("1h") is None and delay_of("soon") is None and delay_of("") is None


async def test_delay_holds_the_answer_back(client: TestClient[object, object]) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await client.get("/t?delay=300ms")
    assert resp.status == 200 and loop.time() - started >= 0.3
    assert (await client.get("/t?delay=later")).status == 400


async def test_sets_response_headers_on_request(client: TestClient[object, object]) -> None:
    resp = await client.get("/set", headers={"X-Echo-Set-Header": "X-Header-Set: one, Other: 2"})
    assert resp.headers["X-Header-Set"] == "one"
    assert resp.headers["Other"] == "2"


async def test_namespace_falls_back_to_the_runtime_variable() -> None:
    app = make_app({"POD_NAME": "p", "POD_NAMESPACE": "ns-b"})
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        body = await (await c.get("/")).json()
    assert body["namespace"] == "ns-b"


def test_canonical_header_names() -> None:
    assert canonical_header("x-header-set") == "X-Header-Set"
    assert canonical_header("SOME-other") == "Some-Other"


def test_the_shipped_image_map_runs_it_on_http_port(tmp_path: object) -> None:
    images = load_image_map("samples/image-maps/gateway-api-conformance.yaml")
    entry = images.lookup("registry.k8s.io/gateway-api/conformance/echo-basic:v0.1.0")
    assert entry is not None and entry.command[-1] == "pilotfish.samples.conformance_echo"
    assert images.lookup("gcr.io/k8s-staging-gateway-api/echo-basic@sha256:ab") is entry
    port = free_port()
    env = {**os.environ, "HTTP_PORT": str(port), "POD_NAME": "web-backend-1", "NAMESPACE": "w"}
    env["H2C_PORT"] = str(free_port())  # not echo-basic's 3001: tests run side by side
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilotfish.samples.conformance_echo"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def health() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return r.status == 200

        poll(health, "the echo backend's /health", deadline=20)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


async def test_retry_simulation_fails_with_the_code_until_succeed_after(
    client: TestClient[object, object],
) -> None:
    path = "/retry/x?uuid=a&succeedAfter=2&responseCode=503"
    statuses = [(await client.get(path)).status for _ in range(3)]
    assert statuses == [503, 503, 200]
    # Another request id starts its own count.
    assert (await client.get("/retry/x?uuid=b&succeedAfter=1&responseCode=500")).status == 500


async def test_retry_simulation_resets_the_connection_without_a_code(
    client: TestClient[object, object],
) -> None:
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(
            b"GET /retry/x?uuid=c&succeedAfter=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        try:
            return await reader.read()
        except ConnectionResetError:
            return b"reset"
        finally:
            writer.close()

    assert await exchange() == b"reset"
    assert (await exchange()).startswith(b"HTTP/1.1 200")


async def test_retry_simulation_needs_its_parameters(client: TestClient[object, object]) -> None:
    assert (await client.get("/retry/x?succeedAfter=1")).status == 400
    assert (await client.get("/retry/x?uuid=d")).status == 400


async def test_websocket_sends_messages_back(client: TestClient[object, object]) -> None:
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("Websocket Support!")
        assert await ws.receive_str() == "Websocket Support!"
        await ws.send_bytes(bytes([1, 2, 3]))
        assert await ws.receive_bytes() == bytes([1, 2, 3])


def _https_get(port: int, sni: str, ca: Path, client: tuple[Path, Path] | None) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    request = f"GET /tls?x=1 HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as sock,
    ):
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return dict(json.loads(body))


def test_serves_https_with_the_tls_assertions_when_given_a_certificate(tmp_path: Path) -> None:
    """As echo-basic with TLS_SERVER_CERT/TLS_SERVER_PRIVKEY: HTTPS on HTTPS_PORT with the
    name the client sent and its certificate (checked against TLS_CLIENT_CACERTS)."""
    ca = TestCa()
    server = ca.issue("abc.example.com", dns=("abc.example.com",))
    client = ca.issue("client")
    files = {
        "crt": server.cert_pem,
        "key": server.key_pem,
        "ca": ca.ca_pem,
        "client.crt": client.cert_pem,
        "client.key": client.key_pem,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    http_port, https_port = free_port(), free_port()
    env = {
        **os.environ,
        "HTTP_PORT": str(http_port),
        "HTTPS_PORT": str(https_port),
        "H2C_PORT": str(free_port()),
        "TLS_SERVER_CERT": str(tmp_path / "crt"),
        "TLS_SERVER_PRIVKEY": str(tmp_path / "key"),
        "TLS_CLIENT_CACERTS": str(tmp_path / "ca"),
        "POD_NAME": "tls-backend-0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilotfish.samples.conformance_echo"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def serving() -> dict[str, Any] | None:
            try:
                return _https_get(https_port, "abc.example.com", tmp_path / "ca", None)
            except OSError:
                return None

        anonymous = poll(serving, "the echo backend's HTTPS listener", deadline=20)
        assert anonymous["path"] == "/tls?x=1" and anonymous["pod"] == "tls-backend-0"
        assert anonymous["tls"]["serverName"] == "abc.example.com"
        assert anonymous["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
        assert "peerCertificates" not in anonymous["tls"]
        pair = (tmp_path / "client.crt", tmp_path / "client.key")
        mutual = _https_get(https_port, "abc.example.com", tmp_path / "ca", pair)
        peer = x509.load_pem_x509_certificate(mutual["tls"]["peerCertificates"][0].encode())
        assert peer == x509.load_pem_x509_certificate(client.cert_pem.encode())
        # Plain HTTP still answers, without a tls object.
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/plain", timeout=5) as r:
            assert "tls" not in json.loads(r.read())
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
