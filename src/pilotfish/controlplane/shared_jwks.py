"""JWKS fetched once per mesh: the leader fetches, etcd carries, every replica serves.

Theory of operation: ``SharedJwks`` has the ``JwksFetcher`` interface the
control plane uses (``want``, ``documents``, ``wait_attempted``, ``close``).
Only the leader (``Leadership``) runs a ``JwksFetcher``; each document it
fetches is written to ``/pilotfish/jwks/<base64url of the URI>`` (outside
the configuration's prefix, so it is no configuration revision). Every
replica, the leader included, follows that prefix with the store's watch
loop (``etcd_watch.Watcher``: resumes after a lost connection, re-lists
after compaction) and serves the documents found there, so a replica that
just took over serves the documents its predecessor fetched until its own
fetches answer. A document that fails to fetch keeps the last one
published, as the fetcher keeps its last good one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pilotfish.controlplane.jwks import JwksFetcher
from pilotfish.controlplane.leadership import Leadership
from pilotfish.store.etcd_client import EtcdError, b64, unb64
from pilotfish.store.etcd_watch import Watcher

__all__ = ["JWKS_PREFIX", "SharedJwks"]

JWKS_PREFIX = "/pilotfish/jwks/"
_END = "/pilotfish/jwks0"

log = logging.getLogger("pilotfish.controlplane.jwks")


def _key(uri: str) -> str:
    return JWKS_PREFIX + base64.urlsafe_b64encode(uri.encode()).decode("ascii")


def _uri(key: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(key[len(JWKS_PREFIX) :]).decode()
    except ValueError:
        return None


class SharedJwks:
    """See the module docstring. ``on_change`` runs when the served documents change."""

    def __init__(self, leadership: Leadership, on_change: Callable[[], None]) -> None:
        self._leadership = leadership
        self._client = leadership.client
        self._on_change = on_change
        self._fetcher = JwksFetcher(self._fetched)
        self._wanted: tuple[str, ...] = ()
        self._published: dict[str, str] = {}  # uri -> document, as etcd holds them
        self._seen = 0
        self._watcher = Watcher(self._client, JWKS_PREFIX, _END, self)
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        leadership.add_listener(self._leadership_changed)

    # -- the JwksFetcher interface --------------------------------------------------

    def want(self, uris: Iterable[str]) -> None:
        self._wanted = tuple(uris)
        if self._leadership.is_leader:
            self._fetcher.want(self._wanted)

    def documents(self) -> Mapping[str, str]:
        wanted = set(self._wanted)
        docs = {u: d for u, d in self._published.items() if u in wanted}
        if self._leadership.is_leader:
            docs.update(self._fetcher.documents())  # the freshest, before etcd echoes them
        return MappingProxyType(docs)

    async def wait_attempted(self, timeout: float) -> None:
        if self._task is None:
            with contextlib.suppress(EtcdError):
                await self._watcher.list_once()
            self._task = asyncio.create_task(self._watcher.run(), name="pilotfish-jwks-watch")
        if self._leadership.is_leader:
            await self._fetcher.wait_attempted(timeout)

    async def close(self) -> None:
        await self._fetcher.close()
        tasks = [t for t in (self._task, *self._writes) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- leading -----------------------------------------------------------------------

    def _leadership_changed(self, leading: bool) -> None:
        self._fetcher.want(self._wanted if leading else ())
        self._on_change()

    def _fetched(self) -> None:
        for uri, document in self._fetcher.documents().items():
            if self._published.get(uri) != document:
                task = asyncio.create_task(self._publish(uri, document))
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
        self._on_change()

    async def _publish(self, uri: str, document: str) -> None:
        try:
            await self._client.acall("/v3/kv/put", {"key": b64(_key(uri)), "value": b64(document)})
        except EtcdError as exc:
            log.warning("cannot publish the JWKS of %s in etcd: %s", uri, exc)

    # -- following etcd (``etcd_watch.Mirror``) ----------------------------------

    @property
    def seen(self) -> int:
        return self._seen

    def fold_listing(self, kvs: Sequence[dict[str, Any]], revision: int) -> None:
        if revision <= self._seen:
            return
        self._published = {}
        for kv in kvs:
            self._fold(kv, deleted=False)
        self._seen = revision
        self._on_change()

    def fold_events(self, events: Sequence[dict[str, Any]], revision: int) -> None:
        for event in events:
            self._fold(event["kv"], deleted=event.get("type") == "DELETE")
        self._seen = max(self._seen, revision)
        self._on_change()

    def _fold(self, kv: dict[str, Any], *, deleted: bool) -> None:
        uri = _uri(unb64(kv["key"]).decode("utf-8", "replace"))
        if uri is None:
            return
        if deleted:
            self._published.pop(uri, None)
        else:
            self._published[uri] = unb64(kv.get("value", "")).decode("utf-8", "replace")

    def progress(self, revision: int) -> None:
        self._seen = max(self._seen, revision)

    def connection(self, problem: str | None) -> None:
        pass  # the store's own watch reports etcd's health in the diagnostics
