"""One keep-alive client connection, and how long a change takes to reach it.

``KeepAlive`` sends every request over one ``http.client`` connection and
fails if that connection was ever replaced: ``http.client`` reconnects
silently when a server closes, and a test of whether a change reaches open
connections must not pass by opening new ones. ``time_to_answers`` measures
from a given instant (``pilotfish apply`` returning) until ``in_a_row``
consecutive requests all got the expected answer.
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.parse
from dataclasses import dataclass, field

__all__ = ["KeepAlive", "time_to_answers"]


@dataclass
class KeepAlive:
    """GET requests over one connection to ``base_url`` (``http://host:port``)."""

    base_url: str
    timeout: float = 5.0
    _conn: http.client.HTTPConnection = field(init=False)
    _sock: socket.socket | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.base_url)
        assert parts.hostname is not None and parts.port is not None, self.base_url
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)

    def answer(self, path: str) -> int | tuple[int, str]:
        """``GET path``'s status, or (status, body) for an error; fails if the
        connection is not the first one."""
        try:
            self._conn.request("GET", path)
            response = self._conn.getresponse()
            body = response.read().decode(errors="replace").strip()
        except (http.client.HTTPException, OSError) as exc:
            raise AssertionError(f"the client connection broke: {exc!r}") from exc
        sock = self._conn.sock
        if self._sock is None:
            self._sock = sock
        assert sock is self._sock, "the client connection was replaced by a new one"
        assert not response.will_close, "the server asked to close the client connection"
        return response.status if response.status < 400 else (response.status, body)

    def close(self) -> None:
        self._conn.close()


def time_to_answers(
    client: KeepAlive,
    path: str,
    expected: int | tuple[int, str],
    since: float,
    *,
    in_a_row: int = 20,
    give_up: float = 30.0,
) -> float:
    """Seconds from ``since`` (``time.monotonic()``) until ``in_a_row`` consecutive
    requests for ``path`` answered ``expected``. Raises ``AssertionError``, with the
    statuses seen, if that has not happened ``give_up`` seconds after ``since``."""
    run = 0
    seen: list[int | tuple[int, str]] = []
    while True:
        got = client.answer(path)
        seen.append(got)
        run = run + 1 if got == expected else 0
        now = time.monotonic()
        if run == in_a_row:
            earlier = seen[:-in_a_row]
            print(f"{path}: {in_a_row} x {expected!r} after {now - since:.3f} s", end="")
            print(f" and {len(earlier)} other answers: {sorted(set(map(str, earlier)))}")
            return now - since
        if now - since > give_up:
            raise AssertionError(
                f"no {in_a_row} answers {expected} in a row for {path} within {give_up} s; "
                f"last statuses: {seen[-60:]}"
            )
