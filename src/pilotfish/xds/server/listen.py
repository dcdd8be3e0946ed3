"""The xDS server's gRPC servers: options, binding, the plain-text and mTLS ports.

One ``grpc.aio`` server per port kind, because gRPC's credentials are per
server port and the mTLS port must require a client certificate while the
plain-text one (loopback, development) has none. Both serve the same generic
handler, whose response serializer passes pre-encoded bytes through.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc

from pilotfish.xds.server.tls import TlsServerConfig, mtls_server_credentials

__all__ = ["passthrough", "serve_mtls", "serve_plaintext"]

_log = logging.getLogger("pilotfish.xds")


def passthrough(data: bytes) -> bytes:
    """The response serializer: responses are encoded bytes already."""
    return data


def _address(host: str, port: int) -> str:
    """``host:port`` as gRPC wants it (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _grpc_server() -> Any:
    return grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", -1),
            # Proxies with several control-plane replicas ping every 5 s to notice a
            # hung replica (agent/bootstrap.py); gRPC's default policy (one ping per
            # 5 min without data) would answer that with GOAWAY too_many_pings.
            ("grpc.http2.min_ping_interval_without_data_ms", 4000),
            # A port another process (a second control-plane replica given the same
            # ports) already serves is an error, not a silently shared port.
            ("grpc.so_reuseport", 0),
        ]
    )


def _bind(server: Any, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
    """Add a port; the bound port, or 0 when it cannot be bound (gRPC raises or says 0)."""
    try:
        if credentials is None:
            return int(server.add_insecure_port(address))
        return int(server.add_secure_port(address, credentials))
    except RuntimeError:
        return 0


async def serve_plaintext(
    handler: Any, host: str, port: int, extra_hosts: Sequence[str]
) -> tuple[Any, int]:
    """A started server on ``host:port`` (0: any free port) and the same port of
    every extra host; the server and the bound port."""
    server = _grpc_server()
    server.add_generic_rpc_handlers((handler,))
    address = _address(host, port)
    bound = _bind(server, address)
    if not bound:
        raise OSError(f"cannot bind xDS server to {address}")
    for extra in extra_hosts:
        if not _bind(server, _address(extra, bound)):
            raise OSError(f"cannot bind xDS server to {extra}:{bound}")
    await server.start()
    _log.info("xDS server listening on %s", address.rsplit(":", 1)[0] + f":{bound}")
    return server, bound


async def serve_mtls(
    handler: Any, host: str, port: int, extra_hosts: Sequence[str], tls: TlsServerConfig
) -> tuple[Any, int]:
    """As ``serve_plaintext``, over TLS that requires a client certificate of the mesh."""
    secure = _grpc_server()
    secure.add_generic_rpc_handlers((handler,))
    credentials = mtls_server_credentials(tls)
    address = _address(host, port)
    bound = _bind(secure, address, credentials)
    if not bound:
        raise OSError(f"cannot bind the xDS mTLS port to {address}")
    for extra in extra_hosts:
        if not _bind(secure, _address(extra, bound), credentials):
            raise OSError(f"cannot bind the xDS mTLS port to {extra}:{bound}")
    await secure.start()
    _log.info("xDS over mTLS listening on %s:%d", host, bound)
    return secure, bound
