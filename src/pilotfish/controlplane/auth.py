"""Authentication of the control plane's HTTP API: one middleware over the whole app.

Loopback is not a trust boundary: in explicit mode every app of the local
mesh shares the host's loopback with this API. So, as the Kubernetes API
server does, every request must carry ``Authorization: Bearer <token>``:
the configuration API (``/api``, ``/apis``), reads and writes alike, the
debug endpoints (which reveal config and state), routes other components add
to the app later (the runtime's ``/runtime/...``), and paths that match no
route (a 404 would tell which routes exist).

Only an explicit allow-list is served without a token: liveness
(``/ready``) and ``/metrics`` (scraped by Prometheus, like istiod's
monitoring port). The check is on the *route the router matched*, not on the
raw path, so no spelling of a path can reach a protected handler through the
allow-list. Anything else without the right token gets 401 with a JSON error
and ``WWW-Authenticate: Bearer``; the presented value never appears in the
answer or in logs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from pilotfish.controlplane.api_token import ApiToken

__all__ = ["PUBLIC_ROUTES", "bearer_token", "token_middleware"]

#: Canonical paths of the routes served without a token.
PUBLIC_ROUTES: Final = frozenset({"/ready", "/metrics"})

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REQUIRED = "a valid 'Authorization: Bearer <token>' header is required"


def bearer_token(request: web.Request) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header (None if none)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _is_public(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in PUBLIC_ROUTES


def token_middleware(token: Callable[[], ApiToken | None]) -> Middleware:
    """A middleware admitting allow-listed routes, and others only with ``token()``.

    ``token`` is asked at each request (the control plane knows its token only
    once started); while it answers None, every protected request is refused.
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if _is_public(request):
            return await handler(request)
        expected = token()
        presented = bearer_token(request)
        if expected is None or presented is None or not expected.matches(presented):
            return web.json_response(
                {"error": _REQUIRED, "errors": [], "warnings": []},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="pilotfish"'},
            )
        return await handler(request)

    return authenticate
