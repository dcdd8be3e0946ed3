"""A small client for the control plane's HTTP API, shared by CLI commands."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["DEFAULT_CONTROL_PLANE", "control_plane_option", "get_json"]

DEFAULT_CONTROL_PLANE = "http://127.0.0.1:15014"
ENV_VAR = "PILOTFISH_CONTROL_PLANE"


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
