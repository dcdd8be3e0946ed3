"""A sample gRPC service that says who answered, for routing tests over HTTP/2.

Run it as ``python -m pilotfish.samples.grpc_echo --service S --version V
[--port N] [--host ADDR]`` (the port defaults to ``$PORT``, else 50051).

It serves, without any compiled ``.proto``:

- ``/pilotfish.echo.Echo/Call``: unary, raw bytes in and out; the answer is
  the JSON object ``{"service", "version", "hostname", "received"}``
  (``received`` is the size of the request message);
- ``/grpc.health.v1.Health/Check``: the standard health check, always
  ``SERVING`` while the process runs (the response message is encoded by
  hand: field 1, varint 1).

With ``--port 0`` the operating system picks the port. Once listening, the
app prints ``listening on HOST:PORT`` on stdout. SIGTERM or SIGINT stop it.
``call`` is a tiny client for tests.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from concurrent import futures
from typing import Any

import click
import grpc

from pilotfish.samples.stop_signals import block_stop_signals, wait_for_stop_signal

__all__ = [
    "CALL_METHOD",
    "HEALTH_METHOD",
    "SERVING",
    "call",
    "health",
    "main",
    "make_server",
]

CALL_METHOD = "/pilotfish.echo.Echo/Call"
HEALTH_METHOD = "/grpc.health.v1.Health/Check"
# grpc.health.v1.HealthCheckResponse{status: SERVING}: field 1 (varint) = 1.
SERVING = b"\x08\x01"


def _identity_handler(service: str, version: str, hostname: str) -> Any:
    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        answer = {
            "service": service,
            "version": version,
            "hostname": hostname,
            "received": len(request),
        }
        return json.dumps(answer).encode()

    return grpc.unary_unary_rpc_method_handler(handle)


def _health_handler() -> Any:
    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        return SERVING

    return grpc.unary_unary_rpc_method_handler(check)


def make_server(
    service: str, version: str, hostname: str, host: str, port: int
) -> tuple[grpc.Server, int]:
    """A server bound to ``host:port`` (not started yet) and the port it is bound to."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "pilotfish.echo.Echo", {"Call": _identity_handler(service, version, hostname)}
            ),
            grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health", {"Check": _health_handler()}
            ),
        )
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    return server, bound


def call(
    target: str,
    payload: bytes = b"",
    *,
    timeout: float = 5.0,
    metadata: Sequence[tuple[str, str]] = (),
    channel: grpc.Channel | None = None,
) -> dict[str, Any]:
    """One ``Call`` to ``target`` (``host:port``); the decoded JSON answer.

    Pass ``channel`` to reuse one connection for many calls; otherwise a
    plaintext channel is opened and closed for this call. Raises
    ``grpc.RpcError`` when the call fails.
    """
    if channel is not None:
        return _call_on(channel, payload, timeout, metadata)
    with grpc.insecure_channel(target) as own:
        return _call_on(own, payload, timeout, metadata)


def _call_on(
    channel: grpc.Channel, payload: bytes, timeout: float, metadata: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    stub = channel.unary_unary(CALL_METHOD)
    raw = stub(payload, timeout=timeout, metadata=tuple(metadata) or None)
    return dict(json.loads(raw))


def health(target: str, *, timeout: float = 5.0) -> bool:
    """Whether ``target`` answers the standard health check with ``SERVING``."""
    with grpc.insecure_channel(target) as channel:
        try:
            return bool(channel.unary_unary(HEALTH_METHOD)(b"", timeout=timeout) == SERVING)
        except grpc.RpcError:
            return False


@click.command("grpc-echo")
@click.option("--service", required=True, help="Service name to report.")
@click.option("--version", "version_", default="v1", show_default=True, help="Version to report.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on (0 picks a free one) [default: $PORT or 50051].",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option(
    "--hostname",
    default=None,
    help="Hostname to report [default: $HOSTNAME or the machine's hostname].",
)
def main(service: str, version_: str, port: int | None, host: str, hostname: str | None) -> None:
    """Answer gRPC calls with who answered, as JSON."""
    if port is None:
        try:
            port = int(os.environ.get("PORT", "50051"))
        except ValueError as exc:
            raise click.BadParameter("PORT must be an integer", param_hint="$PORT") from exc
    name = hostname or os.environ.get("HOSTNAME") or socket.gethostname()
    block_stop_signals()  # before the server's threads exist
    try:
        server, bound = make_server(service, version_, name, host, port)
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    server.start()
    print(f"listening on {host}:{bound}", flush=True)
    wait_for_stop_signal()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
