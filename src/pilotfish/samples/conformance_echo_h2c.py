"""The conformance echo's h2c listener: HTTP/2 with prior knowledge, in clear text.

Theory of operation: upstream's echo-basic serves h2c on ``H2C_PORT``
(default 3001), the target of Services whose port says ``appProtocol:
kubernetes.io/h2c``, and answers there with the same JSON as on its HTTP/1.1
port (``proto`` is then ``HTTP/2.0``). A request that arrives as HTTP/1.x
gets 400 ``Expected h2c request``, as echo-basic answers one without an h2c
upgrade: a proxy that forgets to speak HTTP/2 to such a port is caught,
never served. (The h2c upgrade itself is deprecated by RFC 9113 and not
offered.)

Each connection is read until its first bytes show which protocol it is:
the HTTP/2 client preface, or anything else (HTTP/1.x). An HTTP/2
connection is driven by the sans-IO ``h2`` state machine: request headers
and body are gathered per stream, and when the client ends a stream it gets
its answer. Answers are small JSON documents, far below the initial flow
control window, so no write waits for a window update.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import ProtocolError

from pilotfish.samples.conformance_echo_json import Exchange, describe_exchange, echo_set_headers

__all__ = ["PREFACE", "serve_h2c"]

#: The first bytes of every HTTP/2 connection (RFC 9113, section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_NOT_H2C = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 20\r\nConnection: close\r\n\r\nExpected h2c request"
)
_READ = 65536


@dataclass
class _Stream:
    headers: list[tuple[str, str]] = field(default_factory=list)


async def serve_h2c(host: str, port: int, env: dict[str, str]) -> asyncio.Server:
    """Listen for h2c connections on ``host:port``; answers describe each request."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await _first_bytes(reader)
            if first == PREFACE:
                await _serve_h2(reader, writer, env, first)
            elif first:
                writer.write(_NOT_H2C)
                await writer.drain()
        except (ConnectionError, ProtocolError):
            pass  # the peer broke the connection or the protocol: nothing to answer
        finally:
            writer.close()

    return await asyncio.start_server(on_connection, host, port, reuse_address=True)


async def _first_bytes(reader: asyncio.StreamReader) -> bytes:
    """The connection's bytes until they are the whole preface or cannot be (b"" at EOF)."""
    got = b""
    while len(got) < len(PREFACE) and PREFACE.startswith(got):
        chunk = await reader.read(len(PREFACE) - len(got))
        if not chunk:
            return b""  # closed before saying anything but the start of a preface
        got += chunk
    return got


async def _serve_h2(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, env: dict[str, str], first: bytes
) -> None:
    conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    streams: dict[int, _Stream] = {}
    data = first
    while data:
        for event in conn.receive_data(data):
            if not _handle(conn, event, streams, env):
                writer.write(conn.data_to_send())
                await writer.drain()
                return
        writer.write(conn.data_to_send())
        await writer.drain()
        data = await reader.read(_READ)


def _handle(
    conn: H2Connection, event: Event, streams: dict[int, _Stream], env: dict[str, str]
) -> bool:
    """Apply one event; False once the connection is over."""
    if isinstance(event, RequestReceived) and event.stream_id is not None:
        streams[event.stream_id] = _Stream([(str(k), str(v)) for k, v in event.headers or []])
    elif isinstance(event, DataReceived) and event.stream_id is not None:
        # The body is not echoed; its bytes are given back to the flow control window.
        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
    elif isinstance(event, StreamEnded) and event.stream_id in streams:
        _answer(conn, event.stream_id, streams.pop(event.stream_id), env)
    elif isinstance(event, StreamReset):
        streams.pop(event.stream_id or 0, None)
    elif isinstance(event, ConnectionTerminated):
        return False
    return True


def _answer(conn: H2Connection, stream_id: int, stream: _Stream, env: dict[str, str]) -> None:
    pseudo = {k: v for k, v in stream.headers if k.startswith(":")}
    regular = tuple((k, v) for k, v in stream.headers if not k.startswith(":"))
    path = pseudo.get(":path", "/")
    print(f"Echoing back request made to {path} to client (h2c)", flush=True)
    exchange = Exchange(
        path,
        # Go's server takes Request.Host from :authority, else from a Host header.
        pseudo.get(":authority") or dict(regular).get("host", ""),
        pseudo.get(":method", ""),
        "HTTP/2.0",
        regular,
    )
    body = json.dumps(describe_exchange(exchange, env)).encode()
    extra = echo_set_headers([v for k, v in regular if k.lower() == "x-echo-set-header"])
    headers = [
        (":status", "200"),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        *((k.lower(), v) for k, v in extra.items()),
    ]
    conn.send_headers(stream_id, headers)
    conn.send_data(stream_id, body, end_stream=True)
