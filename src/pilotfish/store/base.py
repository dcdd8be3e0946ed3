"""The store interface: the only way the rest of the system sees configuration.

Theory of operation: a store holds validated ``Resource`` objects keyed by
``ResourceKey``. Every change (apply, delete, a file edit) bumps a single
monotonically growing ``revision``. Watchers are woken after each change and
read a consistent ``list()`` at the new revision; they do not receive deltas,
because every consumer downstream rebuilds an immutable snapshot anyway.
``diagnostics()`` reports the current problems in the sources (a broken file),
which do not remove the last good objects. Since such a problem changes no
object, it bumps no revision: diagnostics listeners hear of it instead, so a
file broken again after a good edit is reported at once, not at the next
unrelated change. ``apply_all`` writes several objects as one change: all of
them or none, and one revision bump.
"""

from __future__ import annotations

import asyncio
import builtins  # the class defines a method named ``list``
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource, ResourceKey

__all__ = ["DiagnosticsListener", "Store", "StoreConflict", "StoreError"]

#: Called (without arguments) when a store's diagnostics change and its revision does not.
DiagnosticsListener = Callable[[], None]

_log = logging.getLogger("pilotfish.store")


class StoreError(Exception):
    """A write was refused; ``diagnostics`` says why, ``key`` names the object
    refused when one object of a batch was."""

    def __init__(
        self,
        message: str,
        diagnostics: Iterable[Diagnostic] = (),
        key: ResourceKey | None = None,
    ) -> None:
        super().__init__(message)
        self.diagnostics = list(diagnostics)
        self.key = key


class StoreConflict(StoreError):
    """A conditional write found the object changed since it was read (another
    writer, such as a second control plane, got in between); nothing was written."""


class Store(ABC):
    """Get / list / apply / delete / watch with a monotonically growing revision."""

    def __init__(self) -> None:
        self._revision = 0
        self._waiters: list[asyncio.Future[int]] = []
        self._diagnostics_listeners: list[DiagnosticsListener] = []

    @property
    def revision(self) -> int:
        return self._revision

    @abstractmethod
    def get(self, key: ResourceKey) -> Resource | None: ...

    @abstractmethod
    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]: ...

    @abstractmethod
    def apply(self, resource: Resource) -> int:
        """Create or replace; returns the new revision. Raises StoreError if refused."""

    @abstractmethod
    def apply_all(self, resources: Sequence[Resource]) -> int:
        """Create or replace every one of ``resources`` (distinct keys) as one change:
        either all are written, with at most one revision bump, or StoreError is
        raised and none is. Returns the revision after the change."""

    @abstractmethod
    def delete(self, key: ResourceKey, expected: Resource | None = None) -> int:
        """Remove; returns the new revision. Raises KeyError if absent. With
        ``expected`` (the object the caller last read), removes it only if the
        store still holds that object, else raises StoreConflict: a compare and
        delete, for writers that decide from what they read (auto-registration's
        expiry, when another replica may have taken the entry over)."""

    def diagnostics(self) -> builtins.list[Diagnostic]:
        """Current problems in the sources (errors and warnings)."""
        return []

    def add_diagnostics_listener(self, listener: DiagnosticsListener) -> None:
        """Call ``listener`` whenever ``diagnostics()`` may have changed without a
        new revision (a revision change is seen through ``wait_for_change``)."""
        self._diagnostics_listeners.append(listener)

    def _diagnostics_changed(self) -> None:
        """Subclasses call it when their diagnostics changed and the revision did not."""
        for listener in tuple(self._diagnostics_listeners):
            try:
                listener()
            except Exception:  # one listener's bug must not stop the store's polling
                _log.exception("diagnostics listener failed")

    async def start(self) -> None:  # noqa: B027 - optional hook, most stores need none
        """Begin watching sources, if any. Loads them once before returning."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop watching."""

    async def wait_for_change(self, after_revision: int) -> int:
        """Return the first revision greater than ``after_revision`` once it exists."""
        if self._revision > after_revision:
            return self._revision
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def _bump(self) -> int:
        """Advance the revision and wake watchers. Subclasses call it after each change."""
        return self._advance(self._revision + 1)

    def _advance(self, revision: int) -> int:
        """Set the revision to ``revision`` (if greater) and wake watchers: for stores
        whose revision comes from their backend (etcd's), which grows by leaps."""
        if revision <= self._revision:
            return self._revision
        self._revision = revision
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(self._revision)
        return self._revision
