"""A small blocking HTTP/2 client for tests: h2c with prior knowledge, or h2 over TLS.

Theory of operation: ``H2Client`` wraps one connected socket (plain, or TLS
that negotiated ``h2`` by ALPN) and drives the sans-IO ``h2`` state machine
over it: the client preface and SETTINGS first, then each ``request`` opens
the next stream, sends its headers (``:authority`` is the request's host, as
Go's transport sends ``Request.Host``) and reads frames until that stream
ends. Several requests may share the connection, the way a browser reuses
one HTTP/2 connection for every host its certificate covers.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)

__all__ = ["H2Answer", "H2Client"]


@dataclass(frozen=True)
class H2Answer:
    status: int
    headers: dict[str, str]  # lower-case names, repeated values joined with ","
    body: bytes


class H2Client:
    """HTTP/2 over ``sock``; ``scheme`` is what ``:scheme`` says (http for h2c)."""

    def __init__(self, sock: socket.socket, scheme: str = "http") -> None:
        self.sock = sock
        self.scheme = scheme
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def request(
        self,
        authority: str,
        path: str,
        method: str = "GET",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> H2Answer:
        stream = self.conn.get_next_available_stream_id()
        sent = [(":method", method), (":scheme", self.scheme), (":authority", authority)]
        sent += [(":path", path), *((k.lower(), v) for k, v in headers)]
        self.conn.send_headers(stream, sent, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        status, got, body = 0, {}, b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the HTTP/2 connection mid-stream")
            for event in self.conn.receive_data(data):
                if isinstance(event, ResponseReceived) and event.stream_id == stream:
                    for key, value in event.headers or []:
                        k, v = str(key), str(value)
                        if k == ":status":
                            status = int(v)
                        elif not k.startswith(":"):
                            got[k] = f"{got[k]},{v}" if k in got else v
                elif isinstance(event, DataReceived) and event.stream_id == stream:
                    body += event.data or b""
                    self.conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, StreamReset) and event.stream_id == stream:
                    raise ConnectionError(f"stream reset by the server (code {event.error_code})")
                elif isinstance(event, ConnectionTerminated):
                    raise ConnectionError(f"GOAWAY from the server (code {event.error_code})")
                elif isinstance(event, StreamEnded) and event.stream_id == stream:
                    self.sock.sendall(self.conn.data_to_send())
                    return H2Answer(status, got, body)
            self.sock.sendall(self.conn.data_to_send())

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.sock.sendall(self.conn.data_to_send())
        except OSError:
            pass  # already gone: closing is all that is left
        finally:
            self.sock.close()
