"""Bookinfo ``details``: ``GET /details/<id>`` answers the book's details, as Istio's does.

Run as ``python -m pilotfish.samples.bookinfo.details [--port N] [--host ADDR]``.
"""

from __future__ import annotations

from typing import Any

import click
from aiohttp import web

from pilotfish.samples.bookinfo.common import health_handler, json_error, run_app

__all__ = ["book_details", "main", "make_app"]


def book_details(book_id: int) -> dict[str, Any]:
    """The details of a book (every id is the same book, as in Istio's sample)."""
    return {
        "id": book_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


async def _details(request: web.Request) -> web.Response:
    try:
        book_id = int(request.match_info["id"])
    except ValueError:
        return json_error("please provide numeric product id", status=400)
    return web.json_response(book_details(book_id))


def make_app() -> web.Application:
    """The details application (no peers, no state)."""
    app = web.Application()
    app.router.add_get("/health", health_handler("details"))
    app.router.add_get("/details/{id}", _details)
    return app


@click.command("details")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="[default: $PORT or 9080]"
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
def main(port: int | None, host: str) -> None:
    """Serve Bookinfo's details service."""
    run_app(make_app, host, port)


if __name__ == "__main__":
    main()
