"""The packed labels' separator cannot come from a request (real Envoy).

Every label of a stat travels in one tag whose fields are joined by
``SEPARATOR`` (``pilotfish.packed_labels``); values a caller controls reach it
through request headers. A real Envoy with the product's source-side stats
logger (it copies ``x-pilotfish-destination-service`` into
``destination_service``) answers a 1 KB direct response:

- a header value without the separator is counted and comes back, unpacked, as
  the label's value (so the header does reach the packed tag);
- the same header holding the separator is refused by Envoy's HTTP/1.1 and
  HTTP/2 codecs, and no unpacked label value ever holds the separator.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from pilotfish import ir
from pilotfish.agent.prom_text import istio_names
from pilotfish.envoy_binary import find_envoy
from pilotfish.packed_labels import SEPARATOR
from pilotfish.peer_labels import DEST_SERVICE_HEADER
from pilotfish.runtime.ports import free_port
from pilotfish.xds.build._common import any_of
from pilotfish.xds.build.stats import build_http_stats_logs
from polling import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GOOD = "reviews.default.svc.cluster.local"
BAD = f"reviews{SEPARATOR}response_code=999"


def _listener(port: int) -> dict[str, object]:
    route = rc_pb2.Route(match=rc_pb2.RouteMatch(prefix="/"))
    route.direct_response.status = 200
    route.direct_response.body.inline_string = "x" * 1024
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="probe",
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        http_filters=[hcm_pb2.HttpFilter(name="router", typed_config=any_of(router_pb2.Router()))],
        access_log=build_http_stats_logs(ir.Metrics("source")),
    )
    hcm.route_config.virtual_hosts.add(name="all", domains=["*"], routes=[route])
    listener = listener_pb2.Listener(name="probe")
    listener.address.socket_address.address = "127.0.0.1"
    listener.address.socket_address.port_value = port
    listener.filter_chains.add().filters.add(name="hcm", typed_config=any_of(hcm))
    return json_format.MessageToDict(listener, preserving_proto_field_name=True)


@pytest.fixture
def envoy(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(listener port, admin port) of a running Envoy."""
    port, admin = free_port(), free_port()
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [_listener(port)]},
    }
    (tmp_path / "envoy.json").write_text(json.dumps(config))
    log = tmp_path / "envoy.log"
    command = [find_envoy(), "-c", str(tmp_path / "envoy.json"), "--concurrency", "1"]
    command += ["--base-id", str(port), "-l", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-2000:]
            return _http1(port, GOOD).startswith(b"HTTP/1.1 200")

        poll(ready, "Envoy answering", deadline=30)
        yield port, admin
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _http1(port: int, service: str) -> bytes:
    request = (
        f"GET / HTTP/1.1\r\nHost: x\r\n{DEST_SERVICE_HEADER}: {service}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: bytes, value: bytes) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def _http2_status_200(port: int, service: str) -> bool:
    """Whether an HTTP/2 (prior knowledge) GET with the header is answered 200."""
    # :method GET, :scheme http, :path / (static table), :authority x, then the header.
    block = (
        b"\x82\x86\x84" + b"\x01\x01x" + _literal(DEST_SERVICE_HEADER.encode(), service.encode())
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b""))
        sock.sendall(_frame(1, 0x5, 1, block))  # END_STREAM | END_HEADERS
        data = b""
        while True:
            while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                length, kind, stream = int.from_bytes(data[:3], "big"), data[3], data[5:9]
                payload, data = data[9 : 9 + length], data[9 + length :]
                sid = int.from_bytes(stream, "big") & 0x7FFFFFFF
                if kind == 1 and sid == 1:  # the response's HEADERS: :status 200 is 0x88
                    return payload[:1] == b"\x88"
                if (kind == 3 and sid == 1) or kind == 7:  # RST_STREAM or GOAWAY
                    return False
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return False
            if not chunk:
                return False
            data += chunk


def _samples(admin: int) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5) as r:
        text = istio_names(r.read().decode("utf-8"), {})
    return [
        (s.name, s.labels, s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "istio_requests_total"
    ]


def _count(admin: int, service: str) -> float:
    return sum(
        v for _n, labels, v in _samples(admin) if labels.get("destination_service") == service
    )


def test_header_values_reach_the_packed_tag_but_the_separator_is_refused(
    envoy: tuple[int, int],
) -> None:
    port, admin = envoy
    before = _count(admin, GOOD)
    assert _http1(port, GOOD).startswith(b"HTTP/1.1 200")
    assert _http2_status_200(port, GOOD)
    poll(lambda: _count(admin, GOOD) - before >= 2, "both requests counted", deadline=10)
    assert _count(admin, GOOD) - before == 2

    assert _http1(port, BAD).startswith(b"HTTP/1.1 400")
    assert not _http2_status_200(port, BAD)
    # Counted after the refused requests too: the stats are current.
    assert _http1(port, GOOD).startswith(b"HTTP/1.1 200")
    poll(lambda: _count(admin, GOOD) - before >= 3, "the last request counted", deadline=10)
    for _name, labels, _value in _samples(admin):
        assert not any(SEPARATOR in v for v in labels.values()), labels
        assert labels.get("response_code") != "999"
