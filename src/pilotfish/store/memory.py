"""An in-memory store: a dict of resources with a revision. For tests and embedding."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store._common import (
    Validator,
    check_batch_keys,
    check_expected,
    check_write,
    same_content,
    select,
    sorted_by_key,
)
from pilotfish.store.base import Store

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Dict-backed ``Store``.

    Every ``apply`` or ``apply_all`` that changes something and every
    ``delete`` bumps the revision by one. Applying a resource identical in apiVersion, kind,
    metadata and spec to the stored one is a no-op that keeps the revision.
    ``validator`` (optional) sees every resource before it is applied and may
    refuse it (see ``Validator``); a refused write changes nothing.
    """

    def __init__(
        self, resources: Iterable[Resource] = (), *, validator: Validator | None = None
    ) -> None:
        super().__init__()
        self._validator = validator
        self._objects: dict[ResourceKey, Resource] = {r.key: r for r in resources}
        self._ordered: tuple[Resource, ...] | None = None
        if self._objects:
            # Initial contents are one change: revision 1, as after a first load.
            self._bump()

    def get(self, key: ResourceKey) -> Resource | None:
        return self._objects.get(key)

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        """Matching resources sorted by kind, namespace, name."""
        if self._ordered is None:
            self._ordered = sorted_by_key(self._objects.values())
        return select(self._ordered, kind, namespace)

    def apply(self, resource: Resource) -> int:
        return self.apply_all([resource])

    def apply_all(self, resources: Sequence[Resource]) -> int:
        """Every changed resource is validated before any is stored: all or nothing."""
        check_batch_keys(resources)
        changed = [r for r in resources if not self._holds(r)]
        for resource in changed:
            check_write(self._validator, resource)
        if not changed:
            return self._revision
        for resource in changed:
            self._objects[resource.key] = resource
        self._ordered = None
        return self._bump()

    def _holds(self, resource: Resource) -> bool:
        current = self._objects.get(resource.key)
        return current is not None and same_content(current, resource)

    def delete(self, key: ResourceKey, expected: Resource | None = None) -> int:
        check_expected(key, self._objects.get(key), expected)  # KeyError when absent
        del self._objects[key]
        self._ordered = None
        return self._bump()

    def __len__(self) -> int:
        return len(self._objects)
