"""What Envoy's matchers read from the request as the user typed it."""

from __future__ import annotations

import pytest

from pilotfish.explain.request import ExplainRequest, RequestError, parse_header


def test_url_parts() -> None:
    r = ExplainRequest("http://Reviews:9080/a/b?x=1&x=2&y", "post", (("end-user", "jason"),))
    assert (r.host, r.port, r.path, r.authority, r.method) == (
        "reviews",
        9080,
        "/a/b",
        "reviews:9080",
        "POST",
    )
    # Envoy keeps the first of a repeated query parameter; a bare name is present.
    assert (r.query_param("x"), r.query_param("y"), r.query_param("z")) == ("1", "", None)
    assert r.header(":authority") == "reviews:9080" and r.header(":method") == "POST"
    assert r.header(":path") == "/a/b?x=1&x=2&y"
    assert r.header("End-User") == "jason" and r.header("x-missing") is None


def test_host_header_and_defaults() -> None:
    # Without a port the Host has none (and https defaults to 443).
    assert ExplainRequest("https://example.com").authority == "example.com"
    assert ExplainRequest("https://example.com").port == 443
    assert ExplainRequest("reviews/x").path == "/x"
    r = ExplainRequest("http://10.0.0.1:80/", headers=(("host", "reviews"),))
    assert r.authority == "reviews" and r.header(":authority") == "reviews"
    # Repeated headers are compared joined, as Envoy's header map does.
    assert ExplainRequest("http://h/", headers=(("a", "1"), ("a", "2"))).header("a") == "1,2"


def test_header_syntax() -> None:
    assert parse_header("X-B:  yes ") == ("x-b", "yes")
    assert parse_header(":scheme: https") == (":scheme", "https")
    assert parse_header("x-empty:") == ("x-empty", "")
    for bad in ("novalue", ": x"):
        with pytest.raises(RequestError):
            parse_header(bad)
    with pytest.raises(RequestError):
        ExplainRequest("ftp://h/")
