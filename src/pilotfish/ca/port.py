"""The CA's own gRPC server: ``CertificateService`` over server-authenticated TLS.

Agents call it before they have a certificate, so the port asks for none;
each request is authenticated by the pod's token instead (``service``). It
never serves xDS: that has its own port, which requires a client
certificate (``pilotfish.xds.server.tls`` explains the split).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc

__all__ = ["CaPort"]

_log = logging.getLogger("pilotfish.ca")


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class CaPort:
    """Serves ``handler`` (the CA's generic handler) with ``credentials`` on one port."""

    def __init__(self, handler: Any, credentials: Any) -> None:
        self._handler = handler
        self._credentials = credentials
        self._server: Any = None
        self.port = 0

    async def start(self, host: str, port: int, extra_hosts: Sequence[str] = ()) -> int:
        """Listen on ``host:port`` (0: any free port) and on ``extra_hosts`` at the same
        port; returns the bound port."""
        if self._server is not None:
            raise RuntimeError("the CA port is already started")
        # Not SO_REUSEPORT: a port another replica serves is an error, not shared.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((self._handler,))
        bound = self._bind(server, _address(host, port))
        if not bound:
            raise OSError(f"cannot bind the CA port to {_address(host, port)}")
        for extra in extra_hosts:
            if not self._bind(server, _address(extra, bound)):
                raise OSError(f"cannot bind the CA port to {_address(extra, bound)}")
        await server.start()
        self._server = server
        self.port = int(bound)
        _log.info("mesh CA listening on %s:%d (TLS)", host, self.port)
        return self.port

    def _bind(self, server: Any, address: str) -> int:
        try:
            return int(server.add_secure_port(address, self._credentials))
        except RuntimeError:  # gRPC raises where it used to return 0
            return 0

    async def close(self, grace: float = 1.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
