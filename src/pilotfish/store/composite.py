"""A store that serves one primary store plus read-only overlays as one.

Theory of operation
-------------------
The control plane sees a single ``Store``; behind it sit the primary (the
configuration users write: files, or memory in tests) and overlays holding
objects that come from elsewhere (live pod registrations as WorkloadEntry
objects). Nothing is copied: every read asks the parts.

- Reads are the union. On a key held by several parts the primary wins, then
  the earlier overlay; each hidden object is reported as a warning in
  ``diagnostics()`` so a shadowed registration is never silently lost.
- ``revision`` is the sum of the parts' revisions. Each part's revision only
  grows, so the sum only grows, and it grows whenever any part changes.
- ``wait_for_change`` waits on every part at once and cancels the other waits
  as soon as one part moves.
- Writes (``apply`` / ``apply_all`` / ``delete``) go to the primary. Deleting an object that
  only an overlay holds is refused: the overlay owns it and would keep it.
"""

from __future__ import annotations

import asyncio
import builtins  # the class defines a method named ``list``
import heapq
from collections.abc import Sequence
from typing import Any

from pilotfish.api.diagnostics import Diagnostic, Severity
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store.base import Store, StoreError

__all__ = ["CompositeStore"]


class CompositeStore(Store):
    """``primary`` plus ``overlays`` as one ``Store``; see the module docstring."""

    def __init__(self, primary: Store, overlays: Sequence[Store] = ()) -> None:
        super().__init__()
        self._primary = primary
        self._overlays: tuple[Store, ...] = tuple(overlays)
        self._parts: tuple[Store, ...] = (primary, *self._overlays)
        for part in self._parts:
            part.add_diagnostics_listener(self._diagnostics_changed)

    @property
    def primary(self) -> Store:
        return self._primary

    @property
    def overlays(self) -> tuple[Store, ...]:
        return self._overlays

    @property
    def revision(self) -> int:
        return sum(part.revision for part in self._parts)

    # -- reading ---------------------------------------------------------------

    def get(self, key: ResourceKey) -> Resource | None:
        for part in self._parts:
            found = part.get(key)
            if found is not None:
                return found
        return None

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        """Matching resources of all parts, sorted by kind, namespace, name; on a
        key held by several parts only the winner (primary first) is listed."""
        lists = [part.list(kind, namespace) for part in self._parts]
        if not any(lists[1:]):
            return lists[0]  # the common case: nothing registered in the overlays
        seen: set[ResourceKey] = set()
        out: list[Resource] = []
        # Each part's list is already sorted; a stable merge keeps earlier parts
        # first among equal keys, so the first one seen is the winner.
        for resource in heapq.merge(*lists, key=_sort_key):
            key = resource.key
            if key not in seen:
                seen.add(key)
                out.append(resource)
        return out

    def diagnostics(self) -> builtins.list[Diagnostic]:
        """Every part's diagnostics, then a warning per overlay object hidden by
        an earlier part."""
        found = [d for part in self._parts for d in part.diagnostics()]
        for index, overlay in enumerate(self._overlays, start=1):
            earlier = self._parts[:index]
            for resource in overlay.list():
                if any(part.get(resource.key) is not None for part in earlier):
                    found.append(_shadowed(resource))
        return found

    def files_status(self) -> builtins.list[dict[str, Any]]:
        """The primary's file status (for ``/debug/configz``), or nothing if it has none."""
        status = getattr(self._primary, "files_status", None)
        if not callable(status):
            return []
        result: builtins.list[dict[str, Any]] = status()
        return result

    # -- writing ---------------------------------------------------------------

    def apply(self, resource: Resource) -> int:
        """Create or replace in the primary; returns the composite revision."""
        self._primary.apply(resource)
        return self.revision

    def apply_all(self, resources: Sequence[Resource]) -> int:
        """Create or replace all of ``resources`` in the primary, as one change
        (the primary's ``apply_all``); returns the composite revision."""
        self._primary.apply_all(resources)
        return self.revision

    def delete(self, key: ResourceKey, expected: Resource | None = None) -> int:
        """Remove from the primary (``expected`` as ``Store.delete``). KeyError if no
        part holds ``key``; StoreError if only an overlay does (it is not
        configuration and would stay)."""
        if self._primary.get(key) is None:
            if any(overlay.get(key) is not None for overlay in self._overlays):
                raise StoreError(
                    f"{key} is a live registration, not stored configuration; "
                    "it goes away when its workload does"
                )
            raise KeyError(key)
        self._primary.delete(key, expected)
        return self.revision

    # -- watching --------------------------------------------------------------

    async def start(self) -> None:
        """Start every part, primary first; a failure closes those already started."""
        started: builtins.list[Store] = []
        try:
            for part in self._parts:
                await part.start()
                started.append(part)
        except BaseException:
            for part in reversed(started):
                await part.close()
            raise

    async def close(self) -> None:
        """Close every part, overlays first; every part is closed even if one fails."""
        error: BaseException | None = None
        for part in reversed(self._parts):
            try:
                await part.close()
            except Exception as exc:  # close the rest, then report the first failure
                error = error or exc
        if error is not None:
            raise error

    async def wait_for_change(self, after_revision: int) -> int:
        """Return the composite revision once it exceeds ``after_revision``."""
        while True:
            current = self.revision
            if current > after_revision:
                return current
            waits = [
                asyncio.ensure_future(part.wait_for_change(part.revision)) for part in self._parts
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
                # Reap the cancelled waits so none is left pending (and warned about).
                await asyncio.gather(*waits, return_exceptions=True)


def _sort_key(resource: Resource) -> tuple[str, str, str]:
    return (resource.kind, resource.namespace, resource.name)


def _shadowed(resource: Resource) -> Diagnostic:
    return Diagnostic(
        Severity.WARNING,
        f"{resource.kind} {resource.namespace}/{resource.name} is also defined in the "
        "configuration, which takes precedence; this registered copy is ignored",
        resource.source,
        resource.kind,
        resource.namespace,
        resource.name,
    )
