"""The HTML of Bookinfo's product page (plain strings, every value escaped)."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

__all__ = ["render", "render_index", "stars_html"]

_MAX_STARS = 5

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 50em; color: #222; }
header { display: flex; justify-content: space-between; align-items: baseline; }
.columns { display: flex; gap: 3em; }
.columns > section { flex: 1; }
blockquote { margin: 0 0 1.5em 0; }
.error { color: #a00; }
.served-by { color: #666; font-size: 0.9em; }
dt { font-weight: bold; }
"""


def stars_html(stars: int, color: str) -> str:
    """``stars`` filled and the rest empty out of five, in ``color``."""
    filled = max(0, min(stars, _MAX_STARS))
    return (
        f'<span class="stars" style="color: {escape(color)}" data-stars="{filled}">'
        f"{'★' * filled}{'☆' * (_MAX_STARS - filled)}</span>"
    )


def _details_html(details: Mapping[str, Any] | None, error: str | None) -> str:
    if details is None:
        return f'<p class="error">{escape(error or "")}</p>'
    rows = [
        ("Type", details.get("type")),
        ("Pages", details.get("pages")),
        ("Publisher", details.get("publisher")),
        ("Language", details.get("language")),
        ("ISBN-10", details.get("ISBN-10")),
        ("ISBN-13", details.get("ISBN-13")),
    ]
    items = "".join(f"<dt>{k}</dt><dd>{escape(str(v))}</dd>" for k, v in rows if v is not None)
    return f"<h4>Book Details</h4><dl>{items}</dl>"


def _review_html(review: Mapping[str, Any]) -> str:
    text = escape(str(review.get("text", "")))
    reviewer = escape(str(review.get("reviewer", "")))
    rating = review.get("rating")
    rating_html = ""
    if isinstance(rating, Mapping):
        stars = rating.get("stars")
        if isinstance(stars, int):
            rating_html = stars_html(stars, str(rating.get("color", "black")))
        elif rating.get("error"):
            rating_html = f'<span class="error">{escape(str(rating["error"]))}</span>'
    return (
        f"<blockquote><p>{text}</p><small>{reviewer}</small>"
        f"{'<br>' + rating_html if rating_html else ''}</blockquote>"
    )


def _reviews_html(reviews: Mapping[str, Any] | None, error: str | None) -> str:
    if reviews is None:
        return f'<p class="error">{escape(error or "")}</p>'
    items = reviews.get("reviews")
    body = "".join(_review_html(r) for r in items if isinstance(r, Mapping)) if items else ""
    version = escape(str(reviews.get("version", "unknown")))
    pod = escape(str(reviews.get("podname", "")))
    served = (
        f'<p class="served-by">Reviews served by: reviews version '
        f'<span class="version">{version}</span>{f" ({pod})" if pod else ""}</p>'
    )
    return f"<h4>Book Reviews</h4>{body}{served}"


def render(
    *,
    product: Mapping[str, Any],
    user: str,
    details: Mapping[str, Any] | None,
    details_error: str | None,
    reviews: Mapping[str, Any] | None,
    reviews_error: str | None,
) -> str:
    """The product page. A missing ``details``/``reviews`` shows its ``*_error`` instead."""
    title = escape(str(product.get("title", "")))
    if user:
        account = (
            f'<span>Signed in as <b class="user">{escape(user)}</b></span> '
            '<a href="/logout">Sign out</a>'
        )
    else:
        account = (
            '<form method="post" action="/login"><input name="username" placeholder="User name">'
            '<input type="password" name="passwd" placeholder="Password">'
            "<button>Sign in</button></form>"
        )
    # descriptionHtml is our own constant markup (PRODUCTS), not user input.
    description = str(product.get("descriptionHtml", ""))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>Simple Bookstore App</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<header><h2>BookInfo Sample</h2><div>{account}</div></header>"
        f"<h1>{title}</h1><p>{description}</p>"
        f'<div class="columns"><section class="details">{_details_html(details, details_error)}'
        f'</section><section class="reviews">{_reviews_html(reviews, reviews_error)}</section>'
        "</div></body></html>\n"
    )


def render_index() -> str:
    """The landing page: a link to the product page."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Simple Bookstore App</title></head><body><h2>Hello! This is a simple bookstore "
        'application consisting of three services.</h2><p><a href="/productpage">'
        "Go to the product page</a> (or "
        '<a href="/productpage?u=normal">as a normal user</a>, '
        '<a href="/productpage?u=jason">as jason</a>).</p></body></html>\n'
    )
