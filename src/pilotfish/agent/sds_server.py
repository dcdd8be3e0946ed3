"""The agent's SDS server: the workload certificate for the local Envoy, over a Unix socket.

Theory of operation: ``SdsServer`` serves
``envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets`` (State of the
World; bookkeeping in ``sds_state``) and ``FetchSecrets`` on
``unix:<work_dir>/sds.sock``. It holds two secrets (names from
``pilotfish.ir.security``): ``default``, a ``tls_certificate`` with the chain
and the private key inline, and ``ROOTCA``, a ``validation_context`` with the
mesh root. ``set_certificate()`` replaces both and pushes them to every stream
subscribed to a secret whose content changed; Envoy then uses the new
certificate for new connections while existing ones carry on.

Socket permissions: the socket hands out the private key, so only Envoy may
connect: mode 0660, owned by the agent's user (or ``uid``, Envoy's user when
it runs as another one) and group ``gid`` (the group Envoy runs with, 1337
under transparent capture) when given. Envoy runs as the agent's uid (root in
a pod) or as ``uid`` or with group ``gid``, so it can connect; other users on
the machine cannot. The socket is created inside a
private 0700 directory, given its mode and group there, and only then renamed
to its final path, so there is no moment when a looser socket is reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import grpc
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilotfish.agent.identity import WorkloadCertificate
from pilotfish.agent.sds_state import SdsRequest, SdsResponse, SdsStreamState, SecretSet
from pilotfish.sds_names import SDS_ROOT_CA, SDS_WORKLOAD_CERT

__all__ = [
    "SDS_SERVICE",
    "SECRET_TYPE",
    "SdsServer",
    "root_ca_secret",
    "workload_cert_secret",
]

SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
SOCKET_MODE = 0o660
# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

_log = logging.getLogger("pilotfish.agent.sds")


def workload_cert_secret(cert: WorkloadCertificate, name: str = SDS_WORKLOAD_CERT) -> bytes:
    """Serialized ``Secret`` with the chain and the private key inline."""
    secret = secret_pb2.Secret(name=name)
    secret.tls_certificate.certificate_chain.inline_bytes = cert.cert_chain_pem.encode("ascii")
    secret.tls_certificate.private_key.inline_bytes = cert.private_key_pem
    return bytes(secret.SerializeToString(deterministic=True))


def root_ca_secret(root_pem: str, name: str = SDS_ROOT_CA) -> bytes:
    """Serialized ``Secret`` with the mesh root as the trusted CA."""
    secret = secret_pb2.Secret(name=name)
    secret.validation_context.trusted_ca.inline_bytes = root_pem.encode("ascii")
    return bytes(secret.SerializeToString(deterministic=True))


def _request_from_proto(request: Any) -> SdsRequest:
    error = request.error_detail.message if request.HasField("error_detail") else None
    return SdsRequest(
        names=tuple(request.resource_names),
        version_info=request.version_info,
        nonce=request.response_nonce,
        error_detail=error,
    )


def _response_proto(response: SdsResponse, current: SecretSet) -> Any:
    message = discovery_pb2.DiscoveryResponse(
        version_info=response.version, type_url=SECRET_TYPE, nonce=response.nonce
    )
    for name in response.names:
        message.resources.append(any_pb2.Any(type_url=SECRET_TYPE, value=current.secrets[name]))
    return message


class _Stream:
    def __init__(self, stream_id: int) -> None:
        self.state = SdsStreamState(nonce_prefix=f"{stream_id}-")
        self.outbox: asyncio.Queue[tuple[SdsResponse, SecretSet] | None] = asyncio.Queue()


class SdsServer:
    """Serves ``default`` and ``ROOTCA`` to the local Envoy; see the module docstring.

    Use from one event loop. ``socket_path`` must be shorter than 108 bytes.
    """

    def __init__(
        self, socket_path: Path, *, uid: int | None = None, gid: int | None = None
    ) -> None:
        """``uid`` / ``gid``: owner and group to give the socket (Envoy's, when it runs as
        another user or group; changing them needs the privileges to do so)."""
        self._uid = uid
        if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
            raise ValueError(
                f"SDS socket path is longer than {_MAX_SOCKET_PATH} bytes: {socket_path} "
                "(choose a shorter --work-dir)"
            )
        self._path = socket_path
        self._gid = gid
        self._server: grpc.aio.Server | None = None
        self._current = SecretSet("", {})
        self._certificate: WorkloadCertificate | None = None
        self._named: dict[str, WorkloadCertificate] = {}
        self._streams: dict[int, _Stream] = {}
        self._next_id = 0
        self._acked: set[tuple[str, str]] = set()  # (name, version) ever ACKed
        self._changed = asyncio.Event()

    @property
    def socket_path(self) -> Path:
        return self._path

    @property
    def certificate(self) -> WorkloadCertificate | None:
        """The certificate currently served (None before the first)."""
        return self._certificate

    @property
    def secret_names(self) -> frozenset[str]:
        """The names of the secrets served now."""
        return frozenset(self._current.secrets)

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def acked(self, name: str, version: str | None = None) -> bool:
        """Whether some stream ACKed ``name`` (at ``version``, default: the current one)."""
        version = self._current.version if version is None else version
        return (name, version) in self._acked

    def served(self, name: str) -> bool:
        """Whether some stream ever ACKed any version of ``name``."""
        return any(acked_name == name for acked_name, _ in self._acked)

    async def wait_acked(self, name: str) -> None:
        """Return once the current version of ``name`` has been ACKed by a stream."""
        while not self.acked(name):
            self._changed.clear()
            await self._changed.wait()

    def set_certificate(self, cert: WorkloadCertificate) -> None:
        """Serve ``cert`` from now on and push it to subscribed streams."""
        self._certificate = cert
        self._publish()

    def set_named_certificate(self, name: str, cert: WorkloadCertificate | None) -> None:
        """Serve ``cert`` as secret ``name`` too (None: stop serving it).

        A node proxy's agent serves one such certificate per service account of
        its host's ambient pods, named by its SPIFFE id, next to its own ``default``.
        """
        if cert is None:
            self._named.pop(name, None)
        else:
            self._named[name] = cert
        self._publish()

    def _publish(self) -> None:
        cert = self._certificate
        if cert is None:
            return
        secrets = {
            SDS_WORKLOAD_CERT: workload_cert_secret(cert),
            SDS_ROOT_CA: root_ca_secret(cert.root_cert_pem),
        }
        serials = [cert.serial_hex]
        for name, named in sorted(self._named.items()):
            secrets[name] = workload_cert_secret(named, name)
            serials.append(named.serial_hex)
        self._current = SecretSet(version="-".join(serials), secrets=secrets)
        for stream in self._streams.values():
            response = stream.state.update(self._current)
            if response is not None:
                stream.outbox.put_nowait((response, self._current))
        self._changed.set()

    async def start(self) -> None:
        """Bind the socket (mode 0660, see the module docstring) and start serving."""
        if self._server is not None:
            raise RuntimeError("SdsServer already started")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".sds-", dir=self._path.parent))
        staged = staging / "s"
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((self._handler(),))
        try:
            if not server.add_insecure_port(f"unix:{staged}"):
                raise OSError(f"cannot bind the SDS socket {staged}")
            await server.start()
            os.chmod(staged, SOCKET_MODE)
            if self._uid is not None or self._gid is not None:
                uid = -1 if self._uid is None else self._uid
                os.chown(staged, uid, -1 if self._gid is None else self._gid)
            os.replace(staged, self._path)
        except BaseException:
            await server.stop(None)
            raise
        finally:
            with contextlib.suppress(OSError):
                staged.unlink()
            with contextlib.suppress(OSError):
                staging.rmdir()
        self._server = server
        _log.info("SDS server listening on %s", self._path)

    async def close(self) -> None:
        server, self._server = self._server, None
        for stream in self._streams.values():
            stream.outbox.put_nowait(None)
        if server is not None:
            await server.stop(0.5)
        with contextlib.suppress(OSError):
            self._path.unlink()
        if self._path.parent.name.startswith("pilotfish-sds-"):
            # A private directory made only for the socket (short-path case).
            with contextlib.suppress(OSError):
                self._path.parent.rmdir()

    # -- gRPC plumbing ---------------------------------------------------------------------

    def _handler(self) -> grpc.GenericRpcHandler:
        handlers = {
            "StreamSecrets": grpc.stream_stream_rpc_method_handler(
                self._stream_secrets,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
            ),
            "FetchSecrets": grpc.unary_unary_rpc_method_handler(
                self._fetch_secrets,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
            ),
        }
        return grpc.method_handlers_generic_handler(SDS_SERVICE, handlers)

    async def _fetch_secrets(self, request: Any, context: Any) -> Any:
        state = SdsStreamState()
        response = state.receive(_request_from_proto(request), self._current)
        if response is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such secret yet")
        assert response is not None
        return _response_proto(response, self._current)

    async def _stream_secrets(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        stream_id = self._next_id
        self._next_id += 1
        stream = _Stream(stream_id)
        self._streams[stream_id] = stream
        reader = asyncio.create_task(self._read(stream, request_iterator))
        try:
            while True:
                item = await stream.outbox.get()
                if item is None:
                    return
                yield _response_proto(*item)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._streams.pop(stream_id, None)

    async def _read(self, stream: _Stream, requests: AsyncIterator[Any]) -> None:
        try:
            async for proto in requests:
                request = _request_from_proto(proto)
                answers_latest = bool(request.nonce) and request.nonce == stream.state.last_nonce
                response = stream.state.receive(request, self._current)
                if answers_latest and request.error_detail is not None:
                    _log.warning(
                        "envoy rejected secrets %s: %s", list(request.names), request.error_detail
                    )
                elif answers_latest:
                    self._record_ack(stream.state.acked_names, stream.state.acked_version)
                if response is not None:
                    stream.outbox.put_nowait((response, self._current))
        finally:
            stream.outbox.put_nowait(None)

    def _record_ack(self, names: Iterable[str], version: str) -> None:
        for name in names:
            self._acked.add((name, version))
        self._changed.set()
