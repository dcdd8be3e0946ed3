"""The control plane's HTTP API token: its value type and the file it lives in.

Theory of operation
-------------------
Every request to the HTTP API except liveness and metrics carries
``Authorization: Bearer <token>`` (see ``auth``). The token comes, in this
order, from ``--api-token`` (an explicit value wins), from a token file
(``<state-dir>/api-token`` for ``pilotfish up``, ``--api-token-file`` for
``pilotfish control-plane``), or, for a control plane embedded in a program
with neither, from a random value that lives only in memory.

A token file is created at first start: 32 random bytes, URL-safe base64,
written 0600 to a temporary file then linked into place (never readable
by others, even briefly, never half-written, never replacing a token that
another starting process just created), in a directory created 0700.
Later starts reuse it, so clients keep working across restarts. A file that
group or others may read or write is refused, as the CA's key is: someone
else could know, or replace, the token.

``ApiToken`` keeps the value out of ``repr``/``str``, so it cannot reach a
log line or an error message by accident; ``matches`` compares in constant
time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from pilotfish.fsutil import atomic_write

__all__ = [
    "DEFAULT_TOKEN_FILE",
    "TOKEN_FILE_NAME",
    "ApiToken",
    "ApiTokenError",
    "load_or_create_token_file",
    "read_token_file",
]

#: Name of the token file in a mesh's state directory.
TOKEN_FILE_NAME: Final = "api-token"
#: Where ``pilotfish control-plane`` keeps its token, and where the CLI looks
#: when given nothing else (relative to the working directory, like ``--state-dir``).
DEFAULT_TOKEN_FILE: Final = os.path.join(".pilotfish", TOKEN_FILE_NAME)

_TOKEN_BYTES = 32


class ApiTokenError(Exception):
    """A token file that cannot be used (unsafe mode, unreadable, empty, malformed)."""


class ApiToken:
    """A bearer token whose value never shows in ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        problem = _problem(value)
        if problem:
            raise ApiTokenError(f"invalid API token: {problem}")
        self._value = value

    @classmethod
    def generate(cls) -> ApiToken:
        return cls(secrets.token_urlsafe(_TOKEN_BYTES))

    def reveal(self) -> str:
        """The value itself: for the ``Authorization`` header and the token file only."""
        return self._value

    def matches(self, presented: str) -> bool:
        """Whether ``presented`` is this token, in time independent of where they differ
        (hashing first also hides the token's length)."""
        given = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        expected = hashlib.sha256(self._value.encode("utf-8")).digest()
        return hmac.compare_digest(given, expected)

    def __repr__(self) -> str:
        return "ApiToken(<redacted>)"

    __str__ = __repr__


def _problem(value: str) -> str:
    """Why ``value`` cannot be a bearer token ("" if it can)."""
    if not value:
        return "it is empty"
    if any(not ("!" <= c <= "~") for c in value):
        return "it must be printable ASCII without spaces"
    return ""


def read_token_file(path: Path) -> ApiToken:
    """The token in ``path`` (surrounding whitespace ignored).

    Raises ``FileNotFoundError`` if there is none, ``ApiTokenError`` if it
    cannot be read or holds no valid token. Messages name the file, never
    its contents.
    """
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise ApiTokenError(f"cannot read the API token file {path}: {reason}") from None
    try:
        return ApiToken(text.strip())
    except ApiTokenError as exc:
        raise ApiTokenError(f"API token file {path}: {exc}") from None


def load_or_create_token_file(path: Path) -> tuple[ApiToken, bool]:
    """The token kept in ``path``, creating it (0600, directory 0700) on first use.

    Returns the token and whether it was just created. Raises ``ApiTokenError``
    for a file or directory that others may read or write, or an unreadable
    or malformed file.
    """
    _check_directory(path.parent)
    if path.exists():
        _check_private(path)
        return read_token_file(path), False
    token = ApiToken.generate()
    if not _write_private(path, token.reveal() + "\n"):
        # Another process created it first: use that one, as it will.
        _check_private(path)
        return read_token_file(path), False
    return token, True


def _check_directory(directory: Path) -> None:
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is subject to the umask
        return
    mode = directory.stat().st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        raise ApiTokenError(
            f"directory {directory} of the API token file is writable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}): the token could be replaced; run: chmod go-w "
            f"{directory}"
        )


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ApiTokenError(
            f"API token file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )


def _write_private(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` (False if it already exists, then unchanged).

    Written with its final mode, then linked into place: never readable by
    others, never partial, and never replacing a token someone already uses.
    """
    return atomic_write(path, text.encode("ascii"), mode=0o600, exclusive=True)
