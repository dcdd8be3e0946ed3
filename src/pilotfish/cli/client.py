"""A small client for the control plane's HTTP API, shared by CLI commands."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

__all__ = [
    "DEFAULT_CONTROL_PLANE",
    "TOKEN_ENV_VAR",
    "ApiResponse",
    "call_api",
    "control_plane_option",
    "get_json",
]

DEFAULT_CONTROL_PLANE = "http://127.0.0.1:15014"
ENV_VAR = "PILOTFISH_CONTROL_PLANE"
#: Bearer token sent to the configuration API, when set (see ``api_token``).
TOKEN_ENV_VAR = "PILOTFISH_API_TOKEN"


_F = TypeVar("_F", bound=Callable[..., Any])


def control_plane_option() -> Callable[[_F], _F]:
    """The ``--control-plane URL`` option every command that talks to the API takes."""
    return click.option(
        "--control-plane",
        "control_plane",
        default=lambda: os.environ.get(ENV_VAR, DEFAULT_CONTROL_PLANE),
        show_default=f"${ENV_VAR} or {DEFAULT_CONTROL_PLANE}",
        help="URL of the control plane's HTTP API.",
    )


def get_json(base: str, path: str, params: dict[str, str] | None = None) -> Any:
    """GET ``base + path`` and decode JSON; a clear ClickException on any failure."""
    url = base.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise click.ClickException(f"{url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(
            f"cannot reach the control plane at {base} ({exc}); "
            f"is it running? (set --control-plane or ${ENV_VAR})"
        ) from exc


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """An HTTP answer of the API: status, decoded JSON body (None if not JSON),
    the response headers (names in lower case), and the text of its ``Warning``
    headers."""

    status: int
    body: Any
    headers: dict[str, str]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_message(self) -> str:
        """The server's ``error`` text, else the status."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return str(self.body["error"])
        return f"HTTP {self.status}"


def call_api(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    params: dict[str, str] | None = None,
    token: str | None = None,
) -> ApiResponse:
    """Send ``method base+path`` with ``body`` as JSON (if not None).

    HTTP error statuses are returned, not raised: callers decide what a 404
    means. Only an unreachable server raises (a ClickException). ``token``
    (default: ``$PILOTFISH_API_TOKEN``) is sent as a Bearer token.
    """
    url = base.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    token = token if token is not None else os.environ.get(TOKEN_ENV_VAR)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return _response(resp.status, resp.read(), resp.headers)
    except urllib.error.HTTPError as exc:
        return _response(exc.code, exc.read(), exc.headers)
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(
            f"cannot reach the control plane at {base} ({exc}); "
            f"is it running? (set --control-plane or ${ENV_VAR})"
        ) from exc


def _response(status: int, raw: bytes, headers: Any) -> ApiResponse:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    warnings = tuple(_warning_text(v) for v in (headers.get_all("Warning") or ()))
    return ApiResponse(status, body, {k.lower(): v for k, v in headers.items()}, warnings)


def _warning_text(value: str) -> str:
    """The text of a ``Warning: 299 agent "text"`` header (the value itself if not so)."""
    _code, _, rest = value.partition(" ")
    _agent, _, quoted = rest.partition(" ")
    if len(quoted) < 2 or not (quoted.startswith('"') and quoted.endswith('"')):
        return value
    out: list[str] = []
    chars = iter(quoted[1:-1])
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)
