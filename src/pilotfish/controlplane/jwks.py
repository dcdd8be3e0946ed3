"""Fetching the JWKS documents RequestAuthentications name by ``jwksUri``.

Theory of operation. Translation is pure and never touches the network, so,
as Istio's istiod does, the control plane fetches each ``jwksUri`` itself and
hands the documents to translation through the snapshot (``Snapshot.jwks``).
``JwksFetcher.want(uris)`` is told the URIs the current configuration names
(on every rebuild); it runs one task per URI that fetches the document, keeps
it, and fetches it again after ``ttl`` seconds (sooner, with a growing delay,
after a failure). When a fetched document differs from the kept one, the
``on_change`` callback runs so that the control plane rebuilds its snapshot.

A failed fetch (network error, non-200 status, oversized or unusable body)
keeps the last good document; a URI that never succeeded has no document,
and translation then uses a JWKS that rejects every token. Only ``http`` and
``https`` URIs are fetched, and only the ones the configuration names; proxy
settings from the environment are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

import aiohttp

from pilotfish.translate.security.jwt import usable_jwks

__all__ = ["DEFAULT_JWKS_TTL", "JwksFetchError", "JwksFetcher"]

log = logging.getLogger("pilotfish.controlplane.jwks")

DEFAULT_JWKS_TTL = 20 * 60.0
_MAX_BYTES = 1 << 20


class JwksFetchError(Exception):
    """A JWKS could not be fetched or is not usable (the message says why)."""


class JwksFetcher:
    """Keeps the JWKS of every wanted ``jwksUri`` fresh. Call ``want`` from the
    event loop; ``close()`` stops every task."""

    def __init__(
        self,
        on_change: Callable[[], None],
        *,
        ttl: float = DEFAULT_JWKS_TTL,
        retry_min: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self._on_change = on_change
        self._ttl = ttl
        self._retry_min = retry_min
        self._timeout = timeout
        self._documents: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._attempted: dict[str, asyncio.Event] = {}
        self._session: aiohttp.ClientSession | None = None

    def documents(self) -> Mapping[str, str]:
        """The last good document of each wanted URI (a read-only copy)."""
        return MappingProxyType(dict(self._documents))

    def want(self, uris: Iterable[str]) -> None:
        """Fetch exactly ``uris`` from now on: start tasks for new ones, stop and
        forget the ones no longer named. Without a running loop it does nothing."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        wanted: set[str] = set()
        for uri in uris:
            scheme = urlsplit(uri).scheme.lower()
            if scheme not in ("http", "https"):
                log.error("jwksUri %r: only http and https are fetched", uri)
                continue
            wanted.add(uri)
        for uri in set(self._tasks) - wanted:
            self._tasks.pop(uri).cancel()
            self._attempted.pop(uri, None)
            self._documents.pop(uri, None)
        for uri in sorted(wanted - set(self._tasks)):
            self._attempted[uri] = asyncio.Event()
            self._tasks[uri] = asyncio.create_task(self._keep_fresh(uri), name=f"jwks {uri}")

    async def wait_attempted(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until every wanted URI was tried once."""
        events = [e.wait() for e in self._attempted.values()]
        if events:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*events), timeout)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, uri: str) -> str:
        """One fetch of ``uri``: the body, if it is a usable JWKS (``JwksFetchError``
        otherwise)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout), trust_env=False
            )
        try:
            async with self._session.get(uri, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise JwksFetchError(f"HTTP status {resp.status}")
                body = await resp.content.read(_MAX_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise JwksFetchError(f"{type(exc).__name__}: {exc}") from exc
        if len(body) > _MAX_BYTES:
            raise JwksFetchError(f"document larger than {_MAX_BYTES} bytes")
        text = body.decode("utf-8", errors="replace")
        if not usable_jwks(text):
            raise JwksFetchError("not a JWKS with usable keys")
        return text

    async def _keep_fresh(self, uri: str) -> None:
        delay = self._retry_min
        while True:
            try:
                text = await self.fetch(uri)
            except JwksFetchError as exc:
                kept = "keeping the last good one" if uri in self._documents else "none yet"
                log.warning("fetching JWKS %s failed (%s); %s", uri, exc, kept)
                self._mark_attempted(uri)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._ttl)
                continue
            delay = self._retry_min
            changed = self._documents.get(uri) != text
            self._documents[uri] = text
            self._mark_attempted(uri)
            if changed:
                log.info("JWKS %s updated", uri)
                try:
                    self._on_change()
                except Exception:  # a callback bug must not stop refreshing
                    log.exception("JWKS change callback failed")
            await asyncio.sleep(self._ttl)

    def _mark_attempted(self, uri: str) -> None:
        event = self._attempted.get(uri)
        if event is not None:
            event.set()
