"""The Gateway API conformance suite's echo backend (``echo-basic``), for ``pilotfish up``.

Run it as ``python -m pilotfish.samples.conformance_echo``. The upstream
conformance manifests run ``gateway-api/conformance/echo-basic`` pods and the
suite's expectations read that server's JSON answer, so this server answers
every request with the same fields::

    {"path": "/x?y=1", "host": "example.com", "method": "GET", "proto": "HTTP/1.1",
     "headers": {"User-Agent": ["..."]}, "namespace": "...", "ingress": "",
     "service": "", "pod": "infra-backend-v1-0"}

``path`` is the request target as received (path and query), ``headers`` maps
each header name (canonical case, as Go prints it) to every value it had,
``namespace`` and ``pod`` come from ``NAMESPACE`` and ``POD_NAME`` (the
manifests set them from the pod's metadata; the runtime sets ``POD_NAME`` and
``POD_NAMESPACE``, which is the fallback). Like echo-basic, it listens on
``HTTP_PORT`` (default 3000) and serves HTTP/2 with prior knowledge (h2c) on
``H2C_PORT`` (default 3001; ``conformance_echo_h2c``), answers ``/health`` with 200, and a request
header ``X-Echo-Set-Header: Name: value`` (comma separated) adds those
response headers, which the response-header tests rely on. A query
parameter ``delay`` (a Go duration such as ``1s`` or ``500ms``, at most
``MAX_DELAY``) holds the answer back that long, as echo-basic does for the
timeout tests. Each request is logged to stdout as echo-basic logs it,
``Echoing back request made to <path> to client (<address>)``: upstream's
mirror tests count these lines in the mirrored backend's logs.
``/ws`` is a websocket that sends every text or binary message back, as
echo-basic's is. ``/retry/...`` simulates a flaky backend for the retry tests, as echo-basic
does: with ``uuid`` and ``succeedAfter=N`` the first N requests of that uuid
fail (after ``delayRetry``, a Go duration, when given), by answering
``responseCode`` when given and otherwise by resetting the connection; later
ones are echoed. With ``TLS_SERVER_CERT`` and ``TLS_SERVER_PRIVKEY`` (PEM
files; upstream's manifests mount them from a Secret volume) it also serves
HTTPS on ``HTTPS_PORT`` (default 8443), verifying a client certificate
against ``TLS_CLIENT_CACERTS`` when one is presented, and its answers there
carry echo-basic's ``tls`` object (version, serverName as the client sent
it, negotiatedProtocol, cipherSuite, peerCertificates as PEM). With
``GRPC_ECHO_SERVER`` set (upstream's grpc-infra-backend Deployments) it
serves upstream's gRPC echo service instead
(``pilotfish.samples.conformance_grpc_echo``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import struct
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from pilotfish.samples.conformance_echo_h2c import serve_h2c
from pilotfish.samples.conformance_echo_json import (
    Exchange,
    canonical_header,
    describe_exchange,
    echo_set_headers,
)

__all__ = [
    "MAX_DELAY",
    "canonical_header",
    "delay_of",
    "describe",
    "main",
    "make_app",
    "server_tls",
    "tls_assertions",
]

#: The longest ``delay`` honoured (seconds): a typo must not park a handler for hours.
MAX_DELAY = 30.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0}


def delay_of(text: str) -> float | None:
    """Seconds of a Go duration made of ms/s/m parts (``1s``, ``1m30s``, ``500ms``);
    None when it is not one."""
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        return None
    return min(MAX_DELAY, sum(float(n) * _UNIT[u] for n, u in parts))


def describe(request: web.Request, env: dict[str, str]) -> dict[str, Any]:
    """The echo-basic JSON for ``request``, with identity from ``env``."""
    out = describe_exchange(
        Exchange(
            request.raw_path,
            request.host,
            request.method,
            f"HTTP/{request.version.major}.{request.version.minor}",
            tuple(request.headers.items()),
        ),
        env,
    )
    if (tls := tls_assertions(request)) is not None:
        out["tls"] = tls
    return out


def tls_assertions(request: web.Request) -> dict[str, Any] | None:
    """echo-basic's ``tls`` object for a request that came over TLS, else None."""
    transport = request.transport
    sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(sslobj, ssl.SSLObject):
        return None
    cipher = sslobj.cipher()
    out: dict[str, Any] = {
        "version": sslobj.version() or "",
        "serverName": getattr(sslobj, "pilotfish_sni", None) or "",
        "cipherSuite": cipher[0] if cipher else "",
    }
    if alpn := sslobj.selected_alpn_protocol():
        out["negotiatedProtocol"] = alpn
    peer = sslobj.getpeercert(binary_form=True)
    if peer:
        out["peerCertificates"] = [ssl.DER_cert_to_PEM_cert(peer)]
    return out


def _remember_sni(sslobj: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
    # The server side of an SSLObject does not keep the name the client sent.
    sslobj.pilotfish_sni = name or ""  # type: ignore[attr-defined]


def server_tls(env: dict[str, str]) -> ssl.SSLContext | None:
    """The HTTPS listener's context when ``TLS_SERVER_CERT`` and ``TLS_SERVER_PRIVKEY``
    are set (as echo-basic: both, or no HTTPS at all)."""
    cert, key = env.get("TLS_SERVER_CERT"), env.get("TLS_SERVER_PRIVKEY")
    if not cert or not key:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    if env.get("TLS_CLIENT_CACERTS"):
        # Go's VerifyClientCertIfGiven: a certificate is checked, none is fine.
        ctx.load_verify_locations(env["TLS_CLIENT_CACERTS"])
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.sni_callback = _remember_sni
    return ctx


def _echo_headers(request: web.Request) -> dict[str, str]:
    return echo_set_headers(request.headers.getall("X-Echo-Set-Header", []))


#: How many retry-simulation request ids are remembered (oldest forgotten first).
MAX_RETRY_IDS = 10_000


class _FailedAttempt(Exception):
    """The connection of a simulated failure was reset: there is no answer."""


def _reset(request: web.Request) -> None:
    """Abort the request's connection with a TCP RST (linger 0), as a crashing
    backend would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _retry_handler(
    attempts: OrderedDict[str, int], echo: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def retry(request: web.Request) -> web.StreamResponse:
        await request.read()
        uuid = request.query.get("uuid", "")
        if not uuid:
            raise web.HTTPBadRequest(text="uuid is required")
        try:
            succeed_after = int(request.query.get("succeedAfter", ""))
        except ValueError:
            raise web.HTTPBadRequest(text="succeedAfter is required") from None
        if attempts.get(uuid, 0) >= succeed_after:
            return await echo(request)
        attempts[uuid] = attempts.get(uuid, 0) + 1
        attempts.move_to_end(uuid)
        while len(attempts) > MAX_RETRY_IDS:
            attempts.popitem(last=False)
        if "delayRetry" in request.query:
            seconds = delay_of(request.query["delayRetry"])
            if seconds is None:
                raise web.HTTPInternalServerError(text="bad delayRetry")
            await asyncio.sleep(seconds)
        code = request.query.get("responseCode", "")
        if code.isdigit():
            return web.Response(status=int(code))
        _reset(request)
        raise _FailedAttempt()

    return retry


@web.middleware
async def _no_answer(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except _FailedAttempt:
        # The connection is gone; aiohttp drops the handler's outcome with it.
        raise asyncio.CancelledError() from None


async def _websocket_echo(request: web.Request) -> web.StreamResponse:
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    print(f"established websocket connection {request.remote}", flush=True)
    async for message in sock:
        if message.type == WSMsgType.TEXT:
            await sock.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sock.send_bytes(message.data)
    return sock


def make_app(env: dict[str, str]) -> web.Application:
    async def health(request: web.Request) -> web.StreamResponse:
        return web.Response(text="OK")

    async def echo(request: web.Request) -> web.StreamResponse:
        await request.read()
        print(
            f"Echoing back request made to {request.raw_path} to client ({request.remote})",
            flush=True,
        )
        if "delay" in request.query:
            seconds = delay_of(request.query["delay"])
            if seconds is None:
                raise web.HTTPBadRequest(text=f"bad delay {request.query['delay']!r}\n")
            await asyncio.sleep(seconds)
        return web.json_response(describe(request, env), headers=_echo_headers(request))

    app = web.Application(middlewares=[_no_answer])
    app.router.add_get("/health", health)
    app.router.add_get("/ws", _websocket_echo)
    app.router.add_route("*", "/retry/{tail:.*}", _retry_handler(OrderedDict(), echo))
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def _serve(
    env: dict[str, str], ports: tuple[int, int, int], tls: ssl.SSLContext | None
) -> None:
    port, h2c_port, tls_port = ports
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(env), access_log=None, handle_signals=False)
    await runner.setup()
    h2c: asyncio.Server | None = None
    try:
        await web.TCPSite(runner, "0.0.0.0", port, reuse_address=True).start()
        print(f"listening on 0.0.0.0:{port}", flush=True)
        h2c = await serve_h2c("0.0.0.0", h2c_port, env)
        print(f"listening on 0.0.0.0:{h2c_port} (h2c)", flush=True)
        if tls is not None:
            site = web.TCPSite(runner, "0.0.0.0", tls_port, ssl_context=tls, reuse_address=True)
            await site.start()
            print(f"listening on 0.0.0.0:{tls_port} (https)", flush=True)
        await stop.wait()
    finally:
        if h2c is not None:
            h2c.close()
        await runner.cleanup()


def main() -> None:
    env = dict(os.environ)
    if env.get("GRPC_ECHO_SERVER"):
        # The same image serves gRPC when the manifest asks for it, as echo-basic does.
        from pilotfish.samples import conformance_grpc_echo

        conformance_grpc_echo.main()
        return
    try:
        ports = tuple(
            int(env.get(name, default))
            for name, default in (
                ("HTTP_PORT", "3000"),
                ("H2C_PORT", "3001"),
                ("HTTPS_PORT", "8443"),
            )
        )
    except ValueError:
        sys.exit("HTTP_PORT, H2C_PORT and HTTPS_PORT must be integers")
    try:
        tls = server_tls(env)
    except (OSError, ssl.SSLError) as exc:
        sys.exit(f"cannot load the TLS certificate, key or client CAs: {exc}")
    try:
        asyncio.run(_serve(env, (ports[0], ports[1], ports[2]), tls))
    except OSError as exc:
        sys.exit(f"cannot listen on ports {', '.join(map(str, ports))}: {exc}")


if __name__ == "__main__":
    main()
