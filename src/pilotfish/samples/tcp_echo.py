"""A sample server-first TCP service: it greets, then echoes lines.

Run it as ``python -m pilotfish.samples.tcp_echo --service S --version V
[--port N] [--host ADDR]`` (the port defaults to ``$PORT``, else 9000).

On every connection the server speaks first, as MySQL or SMTP servers do:
it sends one greeting line ``hello <service> <version> <hostname>``, then
sends back every line it receives, until the client closes. A proxy that
waits for the client's first bytes (to sniff a protocol) would stall such a
connection, which is what tests use it to show.

With ``--port 0`` the operating system picks the port. Once listening, the
app prints ``listening on HOST:PORT`` on stdout. SIGTERM or SIGINT stop it.
``exchange`` is a tiny client for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

import click

__all__ = ["Greeting", "exchange", "greeting_line", "main", "parse_greeting", "serve"]

_MAX_LINE = 64 * 1024


def greeting_line(service: str, version: str, hostname: str) -> bytes:
    """The first line a connection receives."""
    return f"hello {service} {version} {hostname}\n".encode()


class Greeting:
    """A parsed greeting line."""

    __slots__ = ("hostname", "service", "version")

    def __init__(self, service: str, version: str, hostname: str) -> None:
        self.service = service
        self.version = version
        self.hostname = hostname

    def __repr__(self) -> str:
        return f"Greeting({self.service!r}, {self.version!r}, {self.hostname!r})"


def parse_greeting(line: bytes) -> Greeting:
    """``hello S V H`` -> ``Greeting``; ``ValueError`` for anything else."""
    parts = line.decode("utf-8", "replace").split()
    if len(parts) != 4 or parts[0] != "hello":
        raise ValueError(f"not a greeting: {line!r}")
    return Greeting(parts[1], parts[2], parts[3])


def exchange(host: str, port: int, message: str, *, timeout: float = 5.0) -> tuple[Greeting, str]:
    """Connect, read the greeting *before sending anything*, send one line, read its echo."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = sock.makefile("rb")
        greeting = parse_greeting(reader.readline(_MAX_LINE))
        sock.sendall(message.encode() + b"\n")
        echoed = reader.readline(_MAX_LINE).decode().rstrip("\n")
        return greeting, echoed


async def _handle(
    greeting: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        writer.write(greeting)
        await writer.drain()
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass  # a client that resets or sends an endless line: drop it
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(
    service: str, version: str, hostname: str, host: str, port: int, stop: asyncio.Event
) -> None:
    """Serve until ``stop`` is set; prints ``listening on HOST:PORT`` once bound."""
    greeting = greeting_line(service, version, hostname)
    server = await asyncio.start_server(
        lambda r, w: _handle(greeting, r, w), host, port, reuse_address=True, limit=_MAX_LINE
    )
    async with server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on {host}:{bound}", flush=True)
        await stop.wait()


async def _main(service: str, version: str, hostname: str, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(service, version, hostname, host, port, stop)


@click.command("tcp-echo")
@click.option("--service", required=True, help="Service name to greet with.")
@click.option(
    "--version", "version_", default="v1", show_default=True, help="Version to greet with."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on (0 picks a free one) [default: $PORT or 9000].",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option(
    "--hostname",
    default=None,
    help="Hostname to greet with [default: $HOSTNAME or the machine's hostname].",
)
def main(service: str, version_: str, port: int | None, host: str, hostname: str | None) -> None:
    """Greet each connection with a line naming the version, then echo lines."""
    if port is None:
        try:
            port = int(os.environ.get("PORT", "9000"))
        except ValueError as exc:
            raise click.BadParameter("PORT must be an integer", param_hint="$PORT") from exc
    name = hostname or os.environ.get("HOSTNAME") or socket.gethostname()
    try:
        asyncio.run(_main(service, version_, name, host, port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
    sys.exit(0)


if __name__ == "__main__":
    main()
