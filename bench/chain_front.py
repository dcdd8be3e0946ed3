"""The first hop of the ``dataplane_modes`` chain: an HTTP server that asks ``back`` for its answer.

Run by the benchmark as a pod's app (``python bench/chain_front.py``, port from
``$PORT``, default 9080). Every request, whatever its path, becomes one
``GET http://back:9080/?size=1024`` (``$BACK_URL`` overrides it) through one
pooled ``aiohttp.ClientSession`` opened at start-up, so the chain's second hop
reuses connections as an app's HTTP client does; the answer's status and body
are returned as they came. ``/health`` answers itself (the readiness probe must
not depend on ``back`` being up). The session ignores proxy variables: in a mesh
the call goes where capture or the cluster IP sends it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

BACK_URL = os.environ.get("BACK_URL", "http://back:9080/?size=1024")
_SESSION = web.AppKey("session", aiohttp.ClientSession)


async def _health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _forward(request: web.Request) -> web.Response:
    session = request.app[_SESSION]
    try:
        async with session.get(BACK_URL) as answer:
            body = await answer.read()
            return web.Response(
                status=answer.status,
                body=body,
                content_type=answer.content_type,
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.Response(status=502, text=f"back: {type(exc).__name__}: {exc}")


async def _session(app: web.Application) -> AsyncIterator[None]:
    # Unbounded pool: hey's 4 connections each keep one connection to back busy.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False
    ) as session:
        app[_SESSION] = session
        yield


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(_session)
    app.router.add_get("/health", _health)
    app.router.add_get("/{tail:.*}", _forward)
    return app


def main() -> None:
    web.run_app(
        make_app(),
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "9080")),
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
