"""The Gateway API conformance suite's gRPC echo backend (``echo-basic`` in gRPC mode).

Theory of operation: upstream's manifests run the ``echo-basic`` image with
``GRPC_ECHO_SERVER`` set for the ``grpc-infra-backend-*`` Deployments, and the
suite's gRPC expectations read that server's answer. This module serves the
same service, ``gateway_api_conformance.echo_basic.grpcecho.GrpcEcho``:

- ``Echo`` and ``EchoTwo`` answer an ``EchoResponse`` whose ``assertions``
  carry the fully qualified method, every request header (gRPC metadata, one
  ``Header`` per value, ``:authority`` included as the server sees it), the
  ``:authority`` alone, and the pod's ``Context`` (``NAMESPACE``,
  ``INGRESS_NAME``, ``SERVICE_NAME``, ``POD_NAME``; the runtime's
  ``POD_NAMESPACE`` is the fallback for the namespace);
- ``EchoThree`` is declared and deliberately unimplemented (``UNIMPLEMENTED``),
  as upstream's is.

The messages are built at run time from a ``FileDescriptorProto`` written
here (``descriptor_pb2`` + ``message_factory``), with upstream's package,
message and field names and numbers, so the wire format is upstream's and
nothing is generated at install time. The server listens in plaintext on
``HTTP_PORT`` (default 3000) and, as upstream's does when ``TLS_SERVER_CERT``
and ``TLS_SERVER_PRIV_KEY`` name PEM files, over TLS on ``HTTPS_PORT``
(default 8443). Answers over TLS carry ``tls_assertions``; grpcio tells a
server neither the TLS version nor the name the client sent, so only the
peer's certificate (when it presented one) is filled in there. ``call`` is
the client the conformance harness uses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from pilotfish.samples.stop_signals import block_stop_signals, wait_for_stop_signal

__all__ = [
    "METHODS",
    "PACKAGE",
    "SERVICE",
    "Answer",
    "add_tls_port",
    "call",
    "full_method",
    "main",
    "make_server",
    "messages",
]

PACKAGE = "gateway_api_conformance.echo_basic.grpcecho"
SERVICE = f"{PACKAGE}.GrpcEcho"
#: Methods of the service; the last one is declared but not implemented.
METHODS = ("Echo", "EchoTwo", "EchoThree")
_IMPLEMENTED = ("Echo", "EchoTwo")

_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

#: Upstream's messages: name -> [(field, number, type name or "" for string, repeated)].
_SCHEMA: dict[str, list[tuple[str, int, str, bool]]] = {
    "Header": [("key", 1, "", False), ("value", 2, "", False)],
    "Context": [
        ("namespace", 1, "", False),
        ("ingress", 2, "", False),
        ("service_name", 3, "", False),
        ("pod", 4, "", False),
    ],
    "TLSAssertions": [
        ("version", 1, "", False),
        ("negotiated_protocol", 2, "", False),
        ("server_name", 3, "", False),
        ("cipher_suite", 4, "", False),
        ("peer_certificates", 5, "", True),
    ],
    "Assertions": [
        ("fully_qualified_method", 1, "", False),
        ("headers", 2, "Header", True),
        ("authority", 3, "", False),
        ("context", 4, "Context", False),
        ("tls_assertions", 5, "TLSAssertions", False),
    ],
    "EchoRequest": [],
    "EchoResponse": [("assertions", 1, "Assertions", False), ("request", 2, "EchoRequest", False)],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="pilotfish/conformance/grpcecho.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in _SCHEMA.items():
        message = proto.message_type.add(name=name)
        for field_name, number, type_name, repeated in fields:
            entry = message.field.add(
                name=field_name, number=number, label=_REPEATED if repeated else _OPTIONAL
            )
            if type_name:
                entry.type = _MESSAGE
                entry.type_name = f".{PACKAGE}.{type_name}"
            else:
                entry.type = _STRING
    service = proto.service.add(name="GrpcEcho")
    for method in METHODS:
        service.method.add(
            name=method,
            input_type=f".{PACKAGE}.EchoRequest",
            output_type=f".{PACKAGE}.EchoResponse",
        )
    return proto


def _build() -> dict[str, Any]:
    # A private pool: the names cannot clash with anything else loaded in the process.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in _SCHEMA
    }


_MESSAGES = _build()


def messages() -> Mapping[str, Any]:
    """The message classes by short name (``EchoRequest``, ``EchoResponse``, ...)."""
    return _MESSAGES


def full_method(method: str) -> str:
    """``/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/<method>``."""
    return f"/{SERVICE}/{method}"


def _context(env: Mapping[str, str]) -> Any:
    return _MESSAGES["Context"](
        namespace=env.get("NAMESPACE") or env.get("POD_NAMESPACE", ""),
        ingress=env.get("INGRESS_NAME", ""),
        service_name=env.get("SERVICE_NAME", ""),
        pod=env.get("POD_NAME", ""),
    )


def _echo_handler(method: str, env: Mapping[str, str]) -> Any:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        response = _MESSAGES["EchoResponse"]()
        assertions = response.assertions
        assertions.fully_qualified_method = full_method(method)
        # Go's server lists :authority among the headers; grpcio keeps it apart.
        authority = _authority(context)
        assertions.authority = authority
        if authority:
            assertions.headers.add(key=":authority", value=authority)
        for key, value in context.invocation_metadata():
            if isinstance(value, str):  # "-bin" metadata is bytes, not a header value
                assertions.headers.add(key=key, value=value)
        assertions.context.CopyFrom(_context(env))
        auth = context.auth_context()
        if auth.get("transport_security_type") == [b"ssl"]:
            tls = assertions.tls_assertions
            tls.SetInParent()
            for pem in auth.get("x509_pem_cert") or ():
                tls.peer_certificates.append(pem.decode())
        return response

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=_MESSAGES["EchoRequest"].FromString,
        response_serializer=_MESSAGES["EchoResponse"].SerializeToString,
    )


def _authority(context: grpc.ServicerContext) -> str:
    """The request's ``:authority``.

    grpcio has no public accessor for it; the server's call details carry it
    as ``host``. Empty when that internal shape changes (the echo then just
    reports no authority, which no routing check depends on).
    """
    raw = getattr(context, "_rpc_event", None)
    host = getattr(getattr(raw, "call_details", None), "host", b"")
    return host.decode() if isinstance(host, bytes) else str(host or "")


def make_server(env: Mapping[str, str], host: str, port: int) -> tuple[grpc.Server, int]:
    """A server bound to ``host:port`` (not started yet) and the port it is bound to.

    ``EchoThree`` has no handler, so grpcio answers it ``UNIMPLEMENTED``.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {m: _echo_handler(m, env) for m in _IMPLEMENTED}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    return server, bound


def add_tls_port(server: grpc.Server, host: str, port: int, cert: bytes, key: bytes) -> int:
    """Serve ``server`` over TLS on ``host:port`` too (``cert`` and ``key`` in PEM)."""
    credentials = grpc.ssl_server_credentials([(key, cert)])
    bound = server.add_secure_port(f"{host}:{port}", credentials)
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} (TLS)")
    return int(bound)


@dataclass(frozen=True)
class Answer:
    """One RPC's outcome: the status code, and for OK the assertions' fields."""

    code: grpc.StatusCode
    method: str = ""
    authority: str = ""
    namespace: str = ""
    pod: str = ""
    headers: tuple[tuple[str, str], ...] = field(default=())
    details: str = ""
    # Whether the server answered over TLS (its assertions carry tls_assertions).
    tls: bool = False


def call(
    target: str,
    method: str,
    *,
    metadata: Sequence[tuple[str, str]] = (),
    authority: str = "",
    timeout: float = 3.0,
    channel: grpc.Channel | None = None,
) -> Answer:
    """One ``method`` RPC to ``target`` (``host:port``), as upstream's client sends it:
    plaintext, ``:authority`` overridden when given, ``metadata`` as sent
    (gRPC lower-cases the names). Failed RPCs are answers with their code;
    only a bad ``method`` raises."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    if channel is not None:
        return _call_on(channel, method, metadata, timeout)
    options = [("grpc.default_authority", authority)] if authority else []
    with grpc.insecure_channel(target, options=options) as own:
        return _call_on(own, method, metadata, timeout)


def _call_on(
    channel: grpc.Channel, method: str, metadata: Sequence[tuple[str, str]], timeout: float
) -> Answer:
    stub = channel.unary_unary(
        full_method(method),
        request_serializer=_MESSAGES["EchoRequest"].SerializeToString,
        response_deserializer=_MESSAGES["EchoResponse"].FromString,
    )
    sent = tuple((k.lower(), v) for k, v in metadata) or None
    try:
        response = stub(_MESSAGES["EchoRequest"](), timeout=timeout, metadata=sent)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        return Answer(code, details=details or "")
    assertions = response.assertions
    return Answer(
        grpc.StatusCode.OK,
        method=assertions.fully_qualified_method,
        authority=assertions.authority,
        namespace=assertions.context.namespace,
        pod=assertions.context.pod,
        headers=tuple((h.key, h.value) for h in assertions.headers),
        tls=assertions.HasField("tls_assertions"),
    )


def main() -> None:
    env = dict(os.environ)
    try:
        port = int(env.get("HTTP_PORT", "3000"))
        tls_port = int(env.get("HTTPS_PORT", "8443"))
    except ValueError:
        sys.exit("HTTP_PORT and HTTPS_PORT must be integers")
    cert_file, key_file = env.get("TLS_SERVER_CERT"), env.get("TLS_SERVER_PRIV_KEY")
    block_stop_signals()  # before the server's threads exist
    try:
        server, bound = make_server(env, "0.0.0.0", port)
        if cert_file and key_file:
            with open(cert_file, "rb") as c, open(key_file, "rb") as k:
                secure = add_tls_port(server, "0.0.0.0", tls_port, c.read(), k.read())
            print(f"secure server listening at 0.0.0.0:{secure}", flush=True)
    except (OSError, RuntimeError) as exc:
        sys.exit(f"cannot serve on port {port} or {tls_port}: {exc}")
    server.start()
    print(f"plaintext server listening at 0.0.0.0:{bound}", flush=True)
    wait_for_stop_signal()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
