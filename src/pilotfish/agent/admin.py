"""A small asynchronous client of Envoy's admin API (loopback only)."""

from __future__ import annotations

import re

import aiohttp

__all__ = ["AdminError", "EnvoyAdmin", "parse_stats"]


class AdminError(Exception):
    """Envoy's admin API could not be reached or answered badly."""


def parse_stats(text: str) -> dict[str, int]:
    """Parse the text form of ``/stats`` (``name: value`` lines) into counters and gauges.

    Lines whose value is not an integer (histogram summaries) are skipped.
    """
    stats: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.rpartition(": ")
        if not sep:
            continue
        try:
            stats[name.strip()] = int(value.strip())
        except ValueError:
            continue
    return stats


class EnvoyAdmin:
    """Talks to the admin listener at ``http://host:port``.

    Create and close it inside one running event loop. Every call raises
    ``AdminError`` on connection failures and timeouts.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> None:
        self._base = f"http://{host}:{port}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def request(
        self, method: str, path: str, params: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Send one request; return (status, body text)."""
        try:
            async with self._client().request(method, self._base + path, params=params) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AdminError(f"{method} {path}: {exc or type(exc).__name__}") from exc

    async def stats(self, pattern: str) -> dict[str, int]:
        """Counters and gauges whose names match the regular expression ``pattern``."""
        re.compile(pattern)  # fail here, not with an opaque 400 from Envoy
        status, body = await self.request("GET", "/stats", {"filter": pattern})
        if status != 200:
            raise AdminError(f"GET /stats answered {status}: {body.strip()[:200]}")
        return parse_stats(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
