"""A sample HTTP service that describes every request it receives, as JSON.

Run it as ``python -m pilotfish.samples.echo --service S --version V
[--port N] [--host ADDR]``. Every method and path answers with the service's
identity (service, version, hostname, port, a per-process request count) and
the request (method, path, query, headers, body size, peer address).

Query parameters steer the answer, for testing routing and resilience:
``?status=NNN`` answers with that status (still JSON, except statuses that
forbid a body), ``?delay=MS`` waits that many milliseconds first, and
``?size=N`` pads the JSON body to exactly N bytes with a ``pad`` field of
``x`` characters (a body already longer than N gets an empty ``pad``), so
load tests can ask for responses of a fixed size.

``GET /ws`` upgrades to a WebSocket that sends every text or binary message
back unchanged (a text message ``identity`` is answered with the service's
identity as JSON instead), so tests can check upgrades through proxies.

With ``--port 0`` the operating system picks the port. Once listening, the
app prints ``listening on HOST:PORT`` on stdout so callers can find it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

import click
from aiohttp import WSMsgType, web

__all__ = ["EchoIdentity", "main", "make_app", "serve"]

_MAX_DELAY_MS = 300_000
_MAX_SIZE = 16 * 1024 * 1024
_BODILESS_STATUSES = frozenset({204, 304})


@dataclass(slots=True)
class EchoIdentity:
    """Who answers: fixed per process, except ``port`` once bound and ``count``."""

    service: str
    version: str
    hostname: str
    port: int = 0
    count: int = field(default=0)


_IDENTITY = web.AppKey("identity", EchoIdentity)


def _query_int(request: web.Request, name: str, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be an integer in {low}..{high}"}),
            content_type="application/json",
        )
    return value


def _joined(items: Any) -> dict[str, str]:
    """A multi-dict as a plain dict; repeated keys are joined with ``, ``."""
    out: dict[str, str] = {}
    for key, value in items:
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


async def _echo(request: web.Request) -> web.StreamResponse:
    identity = request.app[_IDENTITY]
    identity.count += 1
    count = identity.count
    status = _query_int(request, "status", 200, 599) or 200
    delay = _query_int(request, "delay", 0, _MAX_DELAY_MS)
    size = _query_int(request, "size", 0, _MAX_SIZE)
    body = await request.read()
    if delay:
        await asyncio.sleep(delay / 1000)
    if status in _BODILESS_STATUSES:
        return web.Response(status=status)
    payload = {
        "service": identity.service,
        "version": identity.version,
        "hostname": identity.hostname,
        "port": identity.port,
        "count": count,
        "method": request.method,
        "path": request.path,
        "query": _joined(request.query.items()),
        "headers": _joined(request.headers.items()),
        "body_bytes": len(body),
        "remote": request.remote,
    }
    if size is not None:
        return _padded_response(payload, status, size)
    return web.json_response(payload, status=status)


def _padded_response(payload: dict[str, Any], status: int, size: int) -> web.Response:
    """``payload`` plus a ``pad`` field that makes the JSON body ``size`` bytes long."""
    payload["pad"] = ""
    # json.dumps escapes non-ASCII, so characters are bytes; each "x" adds exactly one.
    shortfall = size - len(json.dumps(payload))
    payload["pad"] = "x" * max(0, shortfall)
    return web.json_response(payload, status=status)


async def _websocket(request: web.Request) -> web.StreamResponse:
    """``GET /ws``: a WebSocket echoing each message; a plain GET is described as usual."""
    ws = web.WebSocketResponse()
    if not ws.can_prepare(request).ok:
        return await _echo(request)
    identity = request.app[_IDENTITY]
    identity.count += 1
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            if msg.data == "identity":
                await ws.send_json(
                    {
                        "service": identity.service,
                        "version": identity.version,
                        "hostname": identity.hostname,
                    }
                )
            else:
                await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def make_app(identity: EchoIdentity) -> web.Application:
    """The echo application for ``identity`` (mutated: ``count`` grows per request)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_IDENTITY] = identity
    app.router.add_get("/ws", _websocket)
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


async def serve(identity: EchoIdentity, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set; prints ``listening on HOST:PORT`` once bound."""
    app = make_app(identity)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        addresses = runner.addresses
        identity.port = int(addresses[0][1]) if addresses else port
        print(f"listening on {host}:{identity.port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


async def _main(identity: EchoIdentity, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(identity, host, port, stop)


@click.command("echo")
@click.option("--service", required=True, help="Service name to report.")
@click.option("--version", "version_", default="v1", show_default=True, help="Version to report.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on (0 picks a free one) [default: $PORT or 8080].",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option(
    "--hostname",
    default=None,
    help="Hostname to report [default: $HOSTNAME or the machine's hostname].",
)
def main(service: str, version_: str, port: int | None, host: str, hostname: str | None) -> None:
    """Answer every HTTP request with a JSON description of it."""
    if port is None:
        try:
            port = int(os.environ.get("PORT", "8080"))
        except ValueError as exc:
            raise click.BadParameter("PORT must be an integer", param_hint="$PORT") from exc
    identity = EchoIdentity(
        service=service,
        version=version_,
        hostname=hostname or os.environ.get("HOSTNAME") or socket.gethostname(),
    )
    try:
        asyncio.run(_main(identity, host, port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
    sys.exit(0)


if __name__ == "__main__":
    main()
