"""The control plane's JWKS fetcher against a local HTTP server: first fetch, refresh on
change, last good document kept on failure, unusable documents refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pilotfish.controlplane.jwks import JwksFetcher
from pilotfish.translate.security.jwt import FAKE_JWKS
from polling import apoll


def _jwks(kid: str) -> str:
    doc = json.loads(FAKE_JWKS)
    doc["keys"][0]["kid"] = kid
    return json.dumps(doc)


class Issuer:
    """What the local server answers: a status and a body, changed by the test."""

    def __init__(self) -> None:
        self.status = 200
        self.body = _jwks("one")
        self.hits = 0

    async def handle(self, _request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(status=self.status, text=self.body)


@pytest.fixture
async def issuer() -> AsyncIterator[tuple[Issuer, str]]:
    state = Issuer()
    app = web.Application()
    app.router.add_get("/jwks", state.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield state, f"http://127.0.0.1:{server.port}/jwks"
    finally:
        await server.close()


async def until(check: Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    await apoll(check, what, deadline, interval=0.02, ignore=())


async def test_fetch_refresh_and_keep_last_good(issuer: tuple[Issuer, str]) -> None:
    state, uri = issuer
    changes: list[int] = []
    fetcher = JwksFetcher(lambda: changes.append(1), ttl=0.1, retry_min=0.05)
    try:
        fetcher.want([uri])
        await fetcher.wait_attempted(5.0)
        assert fetcher.documents() == {uri: _jwks("one")}
        assert changes == [1]

        state.body = _jwks("two")
        await until(lambda: fetcher.documents().get(uri) == _jwks("two"), "the new JWKS")
        assert len(changes) == 2

        # Failures and unusable documents keep the last good one.
        state.status = 500
        hits = state.hits
        await until(lambda: state.hits >= hits + 2, "retries")
        state.status, state.body = 200, "not json"
        hits = state.hits
        await until(lambda: state.hits >= hits + 2, "more retries")
        assert fetcher.documents() == {uri: _jwks("two")}
        assert len(changes) == 2

        # A URI no longer named is forgotten.
        fetcher.want([])
        assert fetcher.documents() == {}
    finally:
        await fetcher.close()


async def test_unreachable_and_non_http_uris_have_no_document() -> None:
    fetcher = JwksFetcher(lambda: None, retry_min=10.0, timeout=1.0)
    try:
        # A loopback port nobody listens on (bound, then closed).
        server = TestServer(web.Application(), host="127.0.0.1", port=0)
        await server.start_server()
        dead = f"http://127.0.0.1:{server.port}/jwks"
        await server.close()
        fetcher.want([dead, "file:///etc/passwd"])
        await fetcher.wait_attempted(5.0)
        assert fetcher.documents() == {}
    finally:
        await fetcher.close()
