"""A small client for the control plane's HTTP API, shared by CLI commands.

Every request carries the API's bearer token, found without the user typing
it: ``--token-file FILE``, else ``$PILOTFISH_API_TOKEN`` (the value), else
``<state-dir>/api-token`` for commands that take ``--state-dir`` (default
``.pilotfish``, as ``status`` and ``down`` find the mesh), else
``.pilotfish/api-token`` in the working directory: where ``pilotfish up``
and ``pilotfish control-plane`` keep it by default. A missing default file is
not an error by itself: the server's 401 is, and then the message says where
the CLI looked.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from pilotfish.controlplane.api_token import (
    DEFAULT_TOKEN_FILE,
    TOKEN_FILE_NAME,
    ApiToken,
    ApiTokenError,
    read_token_file,
)

__all__ = [
    "DEFAULT_CONTROL_PLANE",
    "TOKEN_ENV_VAR",
    "ApiResponse",
    "ControlPlaneApi",
    "call_api",
    "connect",
    "control_plane_option",
    "get_json",
    "token_file_option",
]

DEFAULT_CONTROL_PLANE = "http://127.0.0.1:15014"
ENV_VAR = "PILOTFISH_CONTROL_PLANE"
#: The API's bearer token itself, when set (wins over token files but ``--token-file``).
TOKEN_ENV_VAR = "PILOTFISH_API_TOKEN"


_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ControlPlaneApi:
    """Where the API is and the token to present (None: none was found).

    ``source`` says where the token came from, or where the CLI looked, for
    error messages; the token itself never shows (not in ``repr`` either).
    """

    url: str
    token: ApiToken | None = field(repr=False)
    source: str

    def refused(self) -> click.ClickException:
        """The error for a 401: which token was refused, or that none was found."""
        if self.token is None:
            why = f"no API token was found ({self.source})"
        else:
            why = f"the control plane at {self.url} refused the API token from {self.source}"
        return click.ClickException(
            f"{why}; pass --token-file or run from the mesh's directory "
            f"(where `pilotfish up` or `pilotfish control-plane` keeps {TOKEN_FILE_NAME})"
        )


def token_file_option() -> Callable[[_F], _F]:
    """The ``--token-file FILE`` option of every command that talks to the API."""
    return click.option(
        "--token-file",
        "token_file",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"File holding the API token [default: ${TOKEN_ENV_VAR}, else "
        f"<state-dir>/{TOKEN_FILE_NAME} or {DEFAULT_TOKEN_FILE}].",
    )


def connect(url: str, token_file: str | None, state_dir: Path | None = None) -> ControlPlaneApi:
    """The API at ``url`` with the token found as the module docstring says.

    A ClickException if an explicitly named file is missing, or any token file
    found is unreadable or malformed.
    """
    try:
        if token_file is not None:
            try:
                return ControlPlaneApi(url, read_token_file(Path(token_file)), token_file)
            except FileNotFoundError:
                raise click.ClickException(f"API token file {token_file} does not exist") from None
        from_env = os.environ.get(TOKEN_ENV_VAR)
        if from_env:
            try:
                token = ApiToken(from_env.strip())
            except ApiTokenError as exc:
                raise ApiTokenError(f"${TOKEN_ENV_VAR}: {exc}") from None
            return ControlPlaneApi(url, token, f"${TOKEN_ENV_VAR}")
        path = state_dir / TOKEN_FILE_NAME if state_dir is not None else Path(DEFAULT_TOKEN_FILE)
        try:
            return ControlPlaneApi(url, read_token_file(path), str(path))
        except FileNotFoundError:
            looked = f"no --token-file, no ${TOKEN_ENV_VAR}, no {path}"
            return ControlPlaneApi(url, None, looked)
    except ApiTokenError as exc:
        raise click.ClickException(str(exc)) from None


def control_plane_option() -> Callable[[_F], _F]:
    """The ``--control-plane URL`` option every command that talks to the API takes."""
    return click.option(
        "--control-plane",
        "control_plane",
        default=lambda: os.environ.get(ENV_VAR, DEFAULT_CONTROL_PLANE),
        show_default=f"${ENV_VAR} or {DEFAULT_CONTROL_PLANE}",
        help="URL of the control plane's HTTP API.",
    )


def get_json(api: ControlPlaneApi, path: str, params: dict[str, str] | None = None) -> Any:
    """GET ``path`` and decode JSON; a clear ClickException on any failure."""
    response = call_api(api, "GET", path, params=params)
    if not response.ok:
        url = api.url.rstrip("/") + path
        raise click.ClickException(f"{url}: HTTP {response.status}: {response.error_message()}")
    if response.body is None:
        raise click.ClickException(f"{api.url.rstrip('/')}{path}: the answer is not JSON")
    return response.body


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
    api: ControlPlaneApi,
    method: str,
    path: str,
    body: Any = None,
    *,
    params: dict[str, str] | None = None,
) -> ApiResponse:
    """Send ``method path`` with ``body`` as JSON (if not None) and the API token.

    HTTP error statuses are returned, not raised: callers decide what a 404
    means. Raises a ClickException only for an unreachable server, or a 401
    (the token was refused or none was found: the message says which).
    """
    url = api.url.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if api.token is not None:
        request.add_header("Authorization", f"Bearer {api.token.reveal()}")
    try:
        with _opener().open(request, timeout=30) as resp:
            response = _response(resp.status, resp.read(), resp.headers)
    except urllib.error.HTTPError as exc:
        response = _response(exc.code, exc.read(), exc.headers)
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(
            f"cannot reach the control plane at {api.url} ({exc}); "
            f"is it running? (set --control-plane or ${ENV_VAR})"
        ) from exc
    if response.status == 401:
        raise api.refused()
    return response


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it is: following it would hand the token elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener() -> urllib.request.OpenerDirector:
    """Direct connections only: ``$HTTP_PROXY`` (set for apps in explicit mode, maybe
    inherited) must not see the token, and no redirect may carry it off."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


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
