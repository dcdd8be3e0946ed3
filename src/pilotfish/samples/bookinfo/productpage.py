"""Bookinfo ``productpage``: the page a user sees, built from ``details`` and ``reviews``.

Run as ``python -m pilotfish.samples.bookinfo.productpage [--port N] [--host ADDR]``.

Routes (as Istio's): ``/productpage`` (HTML), ``/api/v1/products``,
``/api/v1/products/<id>`` (details), ``/api/v1/products/<id>/reviews`` (the
reviews service's JSON, unchanged), ``/api/v1/products/<id>/ratings``,
``/login`` (POST, form field ``username``), ``/logout``, ``/health``.

The user is ``?u=<user>``, else the ``end-user`` request header, else the
``user`` cookie set by ``/login``; it is sent to peers as ``end-user`` so that
routing rules can match it. A failing peer gives a 503 JSON error from the API
routes and an inline "currently unavailable" message on the page (Istio's
behaviour, which the fault injection task relies on), never a crash.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import click
from aiohttp import web

from pilotfish.samples.bookinfo import page
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
    run_app,
)

__all__ = ["PRODUCTS", "ProductPageSettings", "main", "make_app"]

DETAILS: Final = Peer("details", "DETAILS_URL", 3.0)
REVIEWS: Final = Peer("reviews", "REVIEWS_URL", 3.0)
RATINGS: Final = Peer("ratings", "RATINGS_URL", 3.0)

#: The catalogue: one book, as in Istio's sample.
PRODUCTS: Final[tuple[Mapping[str, Any], ...]] = (
    {
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": (
            '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
            "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his "
            "shortest and one of his most farcical comedies, with a major part of the humour "
            "coming from slapstick and mistaken identity, in addition to puns and word play."
        ),
    },
)

_SORRY: Final[Mapping[str, str]] = {
    "details": "Sorry, product details are currently unavailable for this book.",
    "reviews": "Sorry, product reviews are currently unavailable for this book.",
    "ratings": "Sorry, product ratings are currently unavailable for this book.",
}
# Istio's productpage asks reviews twice before giving up; its fault injection task
# (a 7s delay against a 3s timeout) depends on it.
_REVIEWS_ATTEMPTS = 2


@dataclass(frozen=True, slots=True)
class ProductPageSettings:
    """Base URLs of the peers, without trailing slashes."""

    details_url: str
    reviews_url: str
    ratings_url: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProductPageSettings:
        """``$DETAILS_URL``, ``$REVIEWS_URL``, ``$RATINGS_URL``, else ``http://<name>:9080``."""
        env = os.environ if environ is None else environ
        return cls(peer_url(DETAILS, env), peer_url(REVIEWS, env), peer_url(RATINGS, env))


_SETTINGS = web.AppKey("productpage_settings", ProductPageSettings)


def _user(request: web.Request) -> str:
    return (
        request.query.get("u") or request.headers.get("end-user") or request.cookies.get("user", "")
    )


def _outbound_headers(request: web.Request) -> dict[str, str]:
    headers = forwarded_headers(request)
    user = _user(request)
    if user:
        headers["end-user"] = user
    else:
        headers.pop("end-user", None)
    return headers


def _product_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "please provide numeric product id"}', content_type="application/json"
        ) from None


async def _get(request: web.Request, peer: Peer, path: str) -> Any:
    """One peer call for ``request`` (reviews: up to two attempts). Raises BackendError."""
    settings = request.app[_SETTINGS]
    base = {
        "details": settings.details_url,
        "reviews": settings.reviews_url,
        "ratings": settings.ratings_url,
    }[peer.name]
    attempts = _REVIEWS_ATTEMPTS if peer is REVIEWS else 1
    headers = _outbound_headers(request)
    for attempt in range(attempts):
        try:
            return await fetch_json(request.app[CLIENT], peer, base + path, headers)
        except BackendError:
            if attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _unavailable(exc: BackendError) -> web.Response:
    return json_error(_SORRY[exc.peer], status=503, service=exc.peer, reason=exc.reason)


async def _api_products(request: web.Request) -> web.Response:
    return web.json_response(list(PRODUCTS))


def _api_proxy(peer: Peer, prefix: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        book_id = _product_id(request)
        try:
            return web.json_response(await _get(request, peer, f"/{prefix}/{book_id}"))
        except BackendError as exc:
            return _unavailable(exc)

    return handler


async def _productpage(request: web.Request) -> web.Response:
    product = PRODUCTS[0]
    book_id = int(product["id"])
    outcomes: tuple[Any, ...] = await asyncio.gather(
        _get(request, DETAILS, f"/details/{book_id}"),
        _get(request, REVIEWS, f"/reviews/{book_id}"),
        return_exceptions=True,
    )
    details, reviews = outcomes
    for outcome in (details, reviews):
        if isinstance(outcome, BaseException) and not isinstance(outcome, BackendError):
            raise outcome
    html = page.render(
        product=product,
        user=_user(request),
        details=details if isinstance(details, dict) else None,
        details_error=_SORRY["details"] if isinstance(details, BackendError) else None,
        reviews=reviews if isinstance(reviews, dict) else None,
        reviews_error=_SORRY["reviews"] if isinstance(reviews, BackendError) else None,
    )
    return web.Response(text=html, content_type="text/html")


async def _index(request: web.Request) -> web.Response:
    return web.Response(text=page.render_index(), content_type="text/html")


async def _login(request: web.Request) -> web.Response:
    form = await request.post()
    user = form.get("username")
    response = web.HTTPFound("/productpage")
    if isinstance(user, str) and user:
        response.set_cookie("user", user, httponly=True, samesite="Lax")
    raise response


async def _logout(request: web.Request) -> web.Response:
    response = web.HTTPFound("/productpage")
    response.del_cookie("user")
    raise response


def make_app(settings: ProductPageSettings | None = None) -> web.Application:
    """The productpage application; settings default to ``ProductPageSettings.from_env()``."""
    app = web.Application()
    app[_SETTINGS] = settings or ProductPageSettings.from_env()
    add_client_session(app)
    app.router.add_get("/", _index)
    app.router.add_get("/health", health_handler("product page"))
    app.router.add_get("/productpage", _productpage)
    app.router.add_post("/login", _login)
    app.router.add_get("/logout", _logout)
    app.router.add_get("/api/v1/products", _api_products)
    app.router.add_get("/api/v1/products/{id}", _api_proxy(DETAILS, "details"))
    app.router.add_get("/api/v1/products/{id}/reviews", _api_proxy(REVIEWS, "reviews"))
    app.router.add_get("/api/v1/products/{id}/ratings", _api_proxy(RATINGS, "ratings"))
    return app


@click.command("productpage")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="[default: $PORT or 9080]"
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
def main(port: int | None, host: str) -> None:
    """Serve Bookinfo's product page."""
    run_app(make_app, host, port)


if __name__ == "__main__":
    main()
