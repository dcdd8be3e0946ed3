"""Bookinfo ``ratings``: ``GET /ratings/<id>`` answers the reviewers' stars.

Run as ``python -m pilotfish.samples.bookinfo.ratings [--port N] [--host ADDR]``.
Like Istio's v1 ratings, the stars are fixed: Reviewer1 gives 5, Reviewer2 gives 4.
"""

from __future__ import annotations

from typing import Any

import click
from aiohttp import web

from pilotfish.samples.bookinfo.common import health_handler, json_error, run_app

__all__ = ["book_ratings", "main", "make_app"]


def book_ratings(book_id: int) -> dict[str, Any]:
    """The ratings of a book."""
    return {"id": book_id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}


async def _ratings(request: web.Request) -> web.Response:
    try:
        book_id = int(request.match_info["id"])
    except ValueError:
        return json_error("please provide numeric product ID", status=400)
    return web.json_response(book_ratings(book_id))


def make_app() -> web.Application:
    """The ratings application (no peers, no state)."""
    app = web.Application()
    app.router.add_get("/health", health_handler("ratings"))
    app.router.add_get("/ratings/{id}", _ratings)
    return app


@click.command("ratings")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="[default: $PORT or 9080]"
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
def main(port: int | None, host: str) -> None:
    """Serve Bookinfo's ratings service."""
    run_app(make_app, host, port)


if __name__ == "__main__":
    main()
