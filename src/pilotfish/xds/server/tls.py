"""The xDS server's TLS port: TLS with optional, verified client certificates.

Theory of operation
-------------------
The secure port must accept two kinds of clients on one port: agents that
have no certificate yet (they call the CA with a token) and proxies that
present a mesh certificate (ADS, which must be bound to the certificate's
identity). That needs a TLS server that *requests* a client certificate,
verifies it when given, and does not require one. gRPC's Python credentials
cannot express that (``require_client_auth=False`` never asks for a
certificate), so TLS is terminated here with the ``ssl`` module
(``CERT_OPTIONAL``, ALPN ``h2``, TLS >= 1.2) and each connection's decrypted
bytes are relayed to a private plain-text gRPC server on a loopback port.

The relay opens one upstream connection per client connection and records
its local port together with the client's verified certificate
(``PeerInfo``) before relaying the first byte. The gRPC handlers of the
private server find the record through ``context.peer()`` (the relay's
address): a call that has a record came in over TLS with exactly that client
certificate (or none). The record is dropped before the upstream socket is
closed, so a later connection reusing the port never sees it. A call on the
private port without a record (another local process connecting directly)
is treated as having no client certificate.

A handshake that fails (a certificate from a foreign CA, an expired one)
ends the connection before any gRPC byte is exchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from pilotfish.ca.identity import uri_sans
from pilotfish.model.proxy_view import META_NAMESPACE, META_SERVICE_ACCOUNT

__all__ = ["PeerInfo", "TlsFront", "TlsServerConfig", "authorize_node"]

_log = logging.getLogger("pilotfish.xds.tls")

_CHUNK = 256 * 1024
_HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class TlsServerConfig:
    """What the TLS port serves with.

    - ``cert_chain_pem``/``key_pem``: the server certificate (leaf first) and key.
    - ``root_pem``: client certificates are verified against this bundle.
    - ``trust_domain``: ADS callers must present ``spiffe://<trust_domain>/ns/<NAMESPACE>/
      sa/<SERVICE_ACCOUNT>`` of their node metadata.
    - ``handlers``: extra gRPC generic handlers served on the TLS port only (the CA).
    """

    cert_chain_pem: bytes
    key_pem: bytes = field(repr=False)
    root_pem: bytes
    trust_domain: str = "cluster.local"
    handlers: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A TLS client as the handshake verified it. ``certificate`` is None when the
    client sent none."""

    certificate: x509.Certificate | None
    uri_sans: tuple[str, ...] = ()

    @classmethod
    def from_der(cls, der: bytes | None) -> PeerInfo:
        if not der:
            return cls(None)
        cert = x509.load_der_x509_certificate(der)
        return cls(cert, tuple(uri_sans(cert)))


def authorize_node(
    peer: PeerInfo | None, metadata: Mapping[str, Any], trust_domain: str
) -> str | None:
    """Why an ADS stream from ``peer`` may not act as the node in ``metadata``, or None.

    The node's NAMESPACE and SERVICE_ACCOUNT (default ``default``) must equal
    the identity in the client certificate's URI SAN.
    """
    if peer is None or peer.certificate is None:
        return "xDS on the secure port requires a client certificate issued by the mesh CA"
    namespace = str(metadata.get(META_NAMESPACE, "") or "")
    account = str(metadata.get(META_SERVICE_ACCOUNT, "") or "default")
    expected = f"spiffe://{trust_domain}/ns/{namespace}/sa/{account}"
    if expected not in peer.uri_sans:
        presented = ", ".join(peer.uri_sans) or "no URI SAN"
        return (
            f"client certificate identity ({presented}) does not match the node's "
            f"identity {expected} (metadata {META_NAMESPACE}/{META_SERVICE_ACCOUNT})"
        )
    return None


def _ssl_context(config: TlsServerConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    # load_cert_chain only reads files: write them to a private directory and
    # remove it right away.
    workdir = tempfile.mkdtemp(prefix="pilotfish-tls-")
    try:
        cert_path = os.path.join(workdir, "cert.pem")
        key_path = os.path.join(workdir, "key.pem")
        for path, data in ((cert_path, config.cert_chain_pem), (key_path, config.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        ctx.load_cert_chain(cert_path, key_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ctx.load_verify_locations(cadata=config.root_pem.decode("ascii"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def _peer_port(grpc_peer: str) -> int | None:
    """The port of a gRPC peer string like ``ipv4:127.0.0.1:40123``."""
    try:
        return int(grpc_peer.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


class TlsFront:
    """Terminates TLS on public addresses and relays to ``127.0.0.1:<upstream_port>``."""

    def __init__(self, config: TlsServerConfig, upstream_port: int) -> None:
        self._ssl = _ssl_context(config)
        self._upstream_port = upstream_port
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._peers: dict[int, PeerInfo] = {}
        self.port = 0

    async def start(self, host: str, port: int, extra_hosts: Sequence[str] = ()) -> int:
        """Listen on ``host:port`` (and ``extra_hosts`` on the same port); returns the port."""
        server = await self._listen(host, port)
        bound = int(server.sockets[0].getsockname()[1])
        self._servers.append(server)
        for extra in extra_hosts:
            self._servers.append(await self._listen(extra, bound))
        self.port = bound
        return bound

    async def _listen(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(
            self._serve,
            host.strip("[]"),
            port,
            ssl=self._ssl,
            ssl_handshake_timeout=_HANDSHAKE_TIMEOUT,
            reuse_address=True,
        )

    def peer(self, grpc_peer: str) -> PeerInfo | None:
        """The TLS client behind a call on the private port; None if it did not come
        through this front."""
        port = _peer_port(grpc_peer)
        return None if port is None else self._peers.get(port)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        self._peers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        port: int | None = None
        up_writer: asyncio.StreamWriter | None = None
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            peer = PeerInfo.from_der(der)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
            port = int(up_writer.get_extra_info("sockname")[1])
            self._peers[port] = peer  # before the first byte reaches gRPC
            await self._relay(reader, writer, up_reader, up_writer)
        except (OSError, ValueError, ssl.SSLError) as exc:
            _log.debug("TLS connection from %s ended: %r", writer.get_extra_info("peername"), exc)
        except asyncio.CancelledError:
            # close() ends connections by cancelling them; this task is the top of the
            # connection (asyncio reports a cancelled connection task as an error).
            pass
        finally:
            if port is not None:
                self._peers.pop(port, None)  # before the port can be reused
            for w in (up_writer, writer):
                if w is not None:
                    w.close()
            if task is not None:
                self._connections.discard(task)

    @staticmethod
    async def _relay(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(_CHUNK):
                dst.write(data)
                await dst.drain()

        tasks = {
            asyncio.ensure_future(pipe(reader, up_writer)),
            asyncio.ensure_future(pipe(up_reader, writer)),
        }
        try:
            # HTTP/2 has no half-close worth keeping: when one side ends, end both.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    _log.debug("TLS relay ended: %r", task.exception())
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
