"""Bookinfo ``reviews``: ``GET /reviews/<id>`` answers two reviews of the book.

Run as ``python -m pilotfish.samples.bookinfo.reviews [--version v1|v2|v3]``
(default ``$SERVICE_VERSION``, else v1). As in Istio's sample, v1 shows no
stars; v2 and v3 ask ``ratings`` for them and colour them black (v2) or red
(v3). When ``ratings`` fails, each review's ``rating`` says so instead.

The answer is Istio's, plus ``version`` (which version served it) and
``headers`` (the tracing and ``end-user`` headers this request carried and
that were forwarded to ``ratings``): both make routing visible from outside.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import click
from aiohttp import web

from pilotfish.samples.bookinfo.common import (
    CLIENT,
    BackendError,
    Peer,
    add_client_session,
    fetch_json,
    forwarded_headers,
    health_handler,
    json_error,
    peer_url,
    pod_name,
    run_app,
)

__all__ = ["RATINGS_UNAVAILABLE", "VERSIONS", "ReviewsSettings", "main", "make_app"]

#: version -> star colour (None: this version does not call ratings).
VERSIONS: Final[Mapping[str, str | None]] = {"v1": None, "v2": "black", "v3": "red"}

RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"

_REVIEWS: Final = (
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to "
        "other plays by Shakespeare.",
    ),
)


@dataclass(frozen=True, slots=True)
class ReviewsSettings:
    """What one reviews process serves. ``ratings_url`` has no trailing slash."""

    version: str
    ratings_url: str
    ratings_timeout: float
    podname: str
    clustername: str

    @classmethod
    def from_env(
        cls, version: str | None = None, environ: Mapping[str, str] | None = None
    ) -> ReviewsSettings:
        """Settings from the environment; ``version`` overrides ``$SERVICE_VERSION``.

        Raises ``ValueError`` for a version other than v1, v2 or v3.
        """
        env = os.environ if environ is None else environ
        chosen = version or env.get("SERVICE_VERSION") or "v1"
        if chosen not in VERSIONS:
            raise ValueError(f"unknown reviews version {chosen!r} (use v1, v2 or v3)")
        # Istio's v3 gives up on ratings sooner (2.5s) than v2 (10s); the fault
        # injection task depends on that difference.
        timeout = 2.5 if chosen == "v3" else 10.0
        return cls(
            version=chosen,
            ratings_url=peer_url(_ratings_peer(timeout), env),
            ratings_timeout=timeout,
            podname=pod_name(env),
            clustername=env.get("CLUSTER_NAME") or "local",
        )


def _ratings_peer(timeout: float) -> Peer:
    return Peer("ratings", "RATINGS_URL", timeout)


_SETTINGS = web.AppKey("reviews_settings", ReviewsSettings)


async def _reviews(request: web.Request) -> web.Response:
    settings = request.app[_SETTINGS]
    try:
        book_id = int(request.match_info["id"])
    except ValueError:
        return json_error("please provide numeric product id", status=400)
    headers = forwarded_headers(request)
    color = VERSIONS[settings.version]
    stars: Mapping[str, Any] | None = None
    if color is not None:
        peer = _ratings_peer(settings.ratings_timeout)
        try:
            answer = await fetch_json(
                request.app[CLIENT], peer, f"{settings.ratings_url}/ratings/{book_id}", headers
            )
            found = answer.get("ratings") if isinstance(answer, dict) else None
            stars = found if isinstance(found, dict) else {}
        except BackendError:
            stars = None
    reviews: list[dict[str, Any]] = []
    for reviewer, text in _REVIEWS:
        review: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if color is not None:
            count = stars.get(reviewer) if stars is not None else None
            if isinstance(count, int):
                review["rating"] = {"stars": count, "color": color}
            else:
                review["rating"] = {"error": RATINGS_UNAVAILABLE}
        reviews.append(review)
    body: dict[str, Any] = {
        "id": str(book_id),
        "version": settings.version,
        "podname": settings.podname,
        "clustername": settings.clustername,
        "reviews": reviews,
        "headers": headers,
        # How the caller addressed this service (shows apps dial plain names).
        "host": request.host,
    }
    return web.json_response(body)


def make_app(settings: ReviewsSettings | None = None) -> web.Application:
    """The reviews application; settings default to ``ReviewsSettings.from_env()``."""
    app = web.Application()
    app[_SETTINGS] = settings or ReviewsSettings.from_env()
    if VERSIONS[app[_SETTINGS].version] is not None:
        add_client_session(app)
    app.router.add_get("/health", health_handler("reviews"))
    app.router.add_get("/reviews/{id}", _reviews)
    return app


@click.command("reviews")
@click.option(
    "--version",
    "version_",
    type=click.Choice(sorted(VERSIONS)),
    default=None,
    help="Which reviews to serve [default: $SERVICE_VERSION or v1].",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="[default: $PORT or 9080]"
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
def main(version_: str | None, port: int | None, host: str) -> None:
    """Serve Bookinfo's reviews service."""
    try:
        settings = ReviewsSettings.from_env(version_)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="$SERVICE_VERSION") from exc
    run_app(lambda: make_app(settings), host, port)


if __name__ == "__main__":
    main()
