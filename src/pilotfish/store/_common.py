"""Helpers shared by the store backends: write validation and content equality."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store.base import StoreConflict, StoreError

__all__ = [
    "Validator",
    "check_batch_keys",
    "check_expected",
    "check_write",
    "same_content",
    "select",
    "sorted_by_key",
]

#: Called before a write. Returns the problems found (an error refuses the write,
#: warnings alone let it through); it may also raise ``StoreError`` itself.
Validator = Callable[[Resource], Iterable[Diagnostic]]


def check_write(validator: Validator | None, resource: Resource) -> None:
    """Run ``validator`` on ``resource``; raise ``StoreError`` if it reports any error."""
    if validator is None:
        return
    problems = list(validator(resource))
    errors = [d for d in problems if d.is_error]
    if errors:
        first = errors[0].format()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StoreError(f"{resource.key} refused: {first}{more}", problems, resource.key)


def check_batch_keys(resources: Sequence[Resource]) -> None:
    """StoreError if two of ``resources`` have the same key (a batch names each once)."""
    seen: set[object] = set()
    for resource in resources:
        if resource.key in seen:
            raise StoreError(f"{resource.key} appears more than once in one write")
        seen.add(resource.key)


def same_content(a: Resource, b: Resource) -> bool:
    """True when two resources mean the same configuration.

    Only apiVersion, kind, metadata and spec count: where an object was read
    from (``source``, ``lines``) and how it was spelled (``raw``) do not.
    """
    return (
        a.api_version == b.api_version
        and a.kind == b.kind
        and a.metadata == b.metadata
        and a.spec == b.spec
    )


def select(ordered: Sequence[Resource], kind: str | None, namespace: str | None) -> list[Resource]:
    """The resources of ``ordered`` matching ``kind`` and ``namespace`` (None matches all)."""
    return [
        r
        for r in ordered
        if (kind is None or r.kind == kind) and (namespace is None or r.namespace == namespace)
    ]


def sorted_by_key(resources: Iterable[Resource]) -> tuple[Resource, ...]:
    """Resources ordered by kind, namespace, name: the order ``list()`` promises."""
    return tuple(sorted(resources, key=_key))


def _key(resource: Resource) -> tuple[str, str, str]:
    # Plain tuples sort in C; comparing ResourceKey dataclasses runs Python code.
    meta = resource.metadata
    return (resource.kind, meta.namespace, meta.name)


def check_expected(key: ResourceKey, current: Resource | None, expected: Resource | None) -> None:
    """For ``delete(key, expected)``: KeyError when nothing is held, StoreConflict
    when what is held is not ``expected`` (the object its caller last read)."""
    if current is None:
        raise KeyError(key)
    if expected is not None and current is not expected and not same_content(current, expected):
        raise StoreConflict(f"{key} changed since it was read; not removed", key=key)
