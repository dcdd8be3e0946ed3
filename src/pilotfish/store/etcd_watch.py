"""Following an etcd key range: list once, then watch from the revision after it.

Theory of operation: the watcher keeps a ``Mirror`` (the store) up to date
with every key in ``[start, end)``. The mirror knows ``seen``, the etcd
revision its contents reflect exactly. A watch is always created from
``seen + 1``, so nothing between what the mirror holds and what etcd sends
is skipped:

- a lost connection (etcd restarted, an endpoint died, the network broke)
  is retried with a growing pause, on the next endpoint first, and resumes
  from ``seen + 1``: every change made meanwhile arrives as events;
- if etcd compacted its history past ``seen + 1`` (it cancels the watch with
  ``compact_revision``), the events in between are gone: the watcher lists
  the range again at the current revision (``Mirror.fold_listing`` works out
  what changed) and watches on from there;
- a progress notification (no events) says every event up to its revision
  was sent: ``seen`` moves there, so a later compaction seldom forces a
  re-list.

Events of one revision (one transaction) come in one response and are
folded together. The mirror drops anything not newer than ``seen`` (its own
writes were folded when they were made).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from pilotfish.store.etcd_client import EtcdClient, EtcdError, b64

__all__ = ["Mirror", "Watcher"]

_log = logging.getLogger("pilotfish.store.etcd")


class Mirror(Protocol):
    @property
    def seen(self) -> int: ...

    def fold_listing(self, kvs: Sequence[dict[str, Any]], revision: int) -> None:
        """The range holds exactly ``kvs`` at ``revision``."""

    def fold_events(self, events: Sequence[dict[str, Any]], revision: int) -> None:
        """``events`` (all of them newer than ``seen``) happened, the last at ``revision``."""

    def progress(self, revision: int) -> None:
        """Nothing in the range changed up to ``revision``."""

    def connection(self, problem: str | None) -> None:
        """The watch is healthy (None), or why it is not."""


class Watcher:
    """Runs the watch loop of the module docstring until cancelled."""

    def __init__(
        self,
        client: EtcdClient,
        start: str,
        end: str,
        mirror: Mirror,
        *,
        retry_min: float = 0.1,
        retry_max: float = 2.0,
    ) -> None:
        self._client = client
        self._range = {"key": b64(start), "range_end": b64(end)}
        self._mirror = mirror
        self._retry_min = retry_min
        self._retry_max = retry_max
        self.relists = 0  # how many times history was gone and the range was listed again
        self.reconnects = 0  # how many watch streams were created after the first

    async def list_once(self) -> None:
        """List the range and fold it into the mirror (the first load, and each re-list)."""
        listing = await self._client.acall("/v3/kv/range", self._range)
        revision = int(listing["header"]["revision"])
        self._mirror.fold_listing(listing.get("kvs", []), revision)

    async def run(self) -> None:
        pause = self._retry_min
        streams = 0
        relist = False
        while True:
            try:
                if relist:
                    await self.list_once()
                    self.relists += 1
                    relist = False
                streams += 1
                if streams > 1:
                    self.reconnects += 1
                relist = await self._follow()
                pause = self._retry_min
            except EtcdError as exc:
                self._mirror.connection(str(exc))
                _log.warning("etcd watch: %s; retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self._retry_max)

    async def _follow(self) -> bool:
        """Follow one watch stream; True when it ended because history was compacted."""
        request = {
            **self._range,
            "start_revision": str(self._mirror.seen + 1),
            "progress_notify": True,
        }
        async for result in self._client.watch(request):
            if result.get("compact_revision"):
                _log.info(
                    "etcd compacted its history to revision %s past revision %d: listing again",
                    result["compact_revision"],
                    self._mirror.seen,
                )
                return True
            if result.get("canceled"):
                raise EtcdError(f"etcd cancelled the watch: {result.get('cancel_reason', '')}")
            if result.get("created"):
                self._mirror.connection(None)
                continue
            events = result.get("events") or []
            revision = int(result.get("header", {}).get("revision", 0))
            if events:
                fresh = [e for e in events if _mod_revision(e) > self._mirror.seen]
                if fresh:
                    self._mirror.fold_events(fresh, max(_mod_revision(e) for e in fresh))
            elif revision:
                self._mirror.progress(revision)
        return False


def _mod_revision(event: dict[str, Any]) -> int:
    return int(event.get("kv", {}).get("mod_revision", 0))
