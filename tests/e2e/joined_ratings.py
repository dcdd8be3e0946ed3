"""A ratings app for a joined host: one star from every reviewer, and a log of callers.

``python joined_ratings.py PORT LOG``: serves ``GET /ratings/<id>`` on
127.0.0.1:PORT (its sidecar forwards there) and appends, per request, the
``x-forwarded-client-cert`` header its sidecar set (empty without mTLS).
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def main(port: int, log: Path) -> None:
    async def ratings(request: web.Request) -> web.Response:
        with log.open("a") as out:
            out.write(request.headers.get("x-forwarded-client-cert", "") + "\n")
        book = int(request.match_info["id"])
        return web.json_response({"id": book, "ratings": {"Reviewer1": 1, "Reviewer2": 1}})

    app = web.Application()
    app.router.add_get("/ratings/{id}", ratings)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
