"""``pilotfish trace-store``: the mesh's embedded Zipkin-compatible trace store."""

from __future__ import annotations

import click
from aiohttp import web

from pilotfish.tracing.server import make_app
from pilotfish.tracing.store import SpanStore, StoreLimits

__all__ = ["trace_store"]


@click.command("trace-store")
@click.option(
    "--address",
    multiple=True,
    default=("127.0.0.1",),
    show_default=True,
    help="Address to listen on; repeat to listen on several.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=9411, show_default=True)
@click.option("--max-traces", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--max-spans", type=click.IntRange(1), default=50_000, show_default=True)
def trace_store(address: tuple[str, ...], port: int, max_traces: int, max_spans: int) -> None:
    """Keep recent spans in bounded memory; serve Zipkin's v2 collector and query API."""
    store = SpanStore(StoreLimits(max_traces=max_traces, max_spans=max_spans))
    web.run_app(make_app(store), host=list(address), port=port, print=None, access_log=None)
