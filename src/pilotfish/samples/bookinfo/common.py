"""What the Bookinfo services share: settings, header forwarding, the HTTP client and serving.

Theory of operation: every app is an ``aiohttp.web.Application`` built by its
module's ``make_app``; apps that call peers get one ``aiohttp.ClientSession``
(created on startup, closed on cleanup) with ``trust_env=True``, so an
``HTTP_PROXY`` in the environment sends calls through the sidecar in explicit
mode, and with timeouts so a dead peer gives an error, not a hang. Handlers copy
the tracing headers of the request they serve onto every outbound call
(``forwarded_headers``): the mesh can only join spans into one trace, and route
on ``end-user``, if the application carries these headers along.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import click
from aiohttp import web

__all__ = [
    "CLIENT",
    "DEFAULT_PORT",
    "FORWARDED_HEADERS",
    "BackendError",
    "Peer",
    "add_client_session",
    "fetch_json",
    "forwarded_headers",
    "health_handler",
    "json_error",
    "listen_port",
    "peer_url",
    "pod_name",
    "run_app",
    "serve",
]

DEFAULT_PORT = 9080

#: Headers copied from the served request onto every outbound call (lower case).
FORWARDED_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "b3",
    "end-user",
    "user-agent",
)

#: The app's one outbound HTTP client (present only in apps that call peers).
CLIENT = web.AppKey("bookinfo_client", aiohttp.ClientSession)


@dataclass(frozen=True, slots=True)
class Peer:
    """A service this app calls: its name, the env variable overriding its URL, and the
    per-call timeout in seconds."""

    name: str
    env: str
    timeout: float


class BackendError(Exception):
    """A peer could not be reached, timed out, answered non-2xx or with invalid JSON.

    ``status`` is the peer's status when it answered, else None.
    """

    def __init__(self, peer: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{peer}: {reason}")
        self.peer = peer
        self.reason = reason
        self.status = status


def peer_url(peer: Peer, environ: Mapping[str, str] | None = None) -> str:
    """Base URL of ``peer`` without a trailing slash: ``$<ENV>`` or ``http://<name>:9080``."""
    env = os.environ if environ is None else environ
    return (env.get(peer.env) or f"http://{peer.name}:{DEFAULT_PORT}").rstrip("/")


def pod_name(environ: Mapping[str, str] | None = None) -> str:
    """The pod this process runs in: ``$POD_NAME`` (set by the runtime), else ``$HOSTNAME``,
    else the machine's host name."""
    env = os.environ if environ is None else environ
    return env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname()


def listen_port(environ: Mapping[str, str] | None = None) -> int:
    """``$PORT`` or 9080. Raises ``click.BadParameter`` when ``$PORT`` is not a port number."""
    env = os.environ if environ is None else environ
    raw = env.get("PORT") or str(DEFAULT_PORT)
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise click.BadParameter(f"PORT must be a port number, got {raw!r}", param_hint="$PORT")
    return port


def forwarded_headers(request: web.Request) -> dict[str, str]:
    """The request's tracing, ``end-user`` and ``user-agent`` headers, to send on."""
    return {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}


def add_client_session(app: web.Application) -> None:
    """Give ``app`` its outbound client under ``CLIENT``, open while the app runs.

    ``trust_env=True``: proxies from ``HTTP_PROXY``/``NO_PROXY`` (explicit sidecar mode).
    Per-call timeouts are passed to ``fetch_json``; the session's own default is a backstop.
    """

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            trust_env=True,
            timeout=aiohttp.ClientTimeout(total=30, connect=5),
            # Keep the forwarded user-agent: aiohttp would otherwise set its own.
            skip_auto_headers=("User-Agent",),
        )
        app[CLIENT] = session
        try:
            yield
        finally:
            await session.close()

    app.cleanup_ctx.append(client_ctx)


async def fetch_json(
    session: aiohttp.ClientSession,
    peer: Peer,
    url: str,
    headers: Mapping[str, str],
) -> Any:
    """GET ``url`` and return its JSON body; any failure is a ``BackendError``."""
    try:
        async with session.get(
            url, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=peer.timeout)
        ) as response:
            if response.status != 200:
                raise BackendError(peer.name, f"answered HTTP {response.status}", response.status)
            try:
                return await response.json(content_type=None)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BackendError(peer.name, f"answered invalid JSON: {exc}") from exc
    except TimeoutError as exc:
        raise BackendError(peer.name, f"timed out after {peer.timeout:g}s") from exc
    except aiohttp.ClientError as exc:
        raise BackendError(peer.name, f"unreachable: {exc}") from exc


def json_error(message: str, status: int = 503, **extra: Any) -> web.Response:
    """A JSON ``{"error": message, ...}`` response."""
    return web.json_response({"error": message, **extra}, status=status)


def health_handler(service: str) -> Callable[[web.Request], Any]:
    """A ``GET /health`` handler answering ``{"status": "<Service> is healthy"}``."""
    body = {"status": f"{service.capitalize()} is healthy"}

    async def health(request: web.Request) -> web.Response:
        return web.json_response(body)

    return health


async def serve(app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``app`` until ``stop`` is set; prints ``listening on HOST:PORT`` once bound."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        addresses = runner.addresses
        bound = int(addresses[0][1]) if addresses else port
        print(f"listening on {host}:{bound}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def run_app(make_app: Callable[[], web.Application], host: str, port: int | None) -> None:
    """Run an app in the foreground until SIGTERM or SIGINT (for the modules' ``main``)."""
    chosen = listen_port() if port is None else port

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(make_app(), host, chosen, stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{chosen}: {exc}") from exc
