"""Combining the objects of many files into one effective set.

Each file contributes the objects of its last good load (a file that was
never good contributes nothing). Files are visited in precedence order; the
first definition of a kind/namespace/name wins and every later one is ignored
with an error naming both places.

Most changes rewrite a file that keeps its objects (an endpoint moving, a
weight edited): ``update`` then replaces those objects in the previous merge
instead of merging every file again, which at thousands of files was most of
the time a change took to fold. It declines (returns None) whenever the
precedence could matter: a file new, gone or changing which objects it
defines, or any of its objects involved in a duplicate; the caller then merges
everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store._common import same_content

__all__ = ["Contribution", "Merged", "merge", "same_set", "update"]


@dataclass(frozen=True, slots=True)
class Contribution:
    """The objects one file currently offers, in the order the file defines them."""

    path: str
    resources: tuple[Resource, ...]


@dataclass(frozen=True, slots=True)
class Merged:
    """The effective objects, which file serves each, and the duplicates that were ignored."""

    objects: dict[ResourceKey, Resource]
    owners: dict[ResourceKey, str]
    duplicates: tuple[Diagnostic, ...]
    ignored: dict[str, tuple[ResourceKey, ...]]


def merge(contributions: Iterable[Contribution]) -> Merged:
    """Merge ``contributions`` given in precedence order (first definition wins)."""
    objects: dict[ResourceKey, Resource] = {}
    owners: dict[ResourceKey, str] = {}
    duplicates: list[Diagnostic] = []
    ignored: dict[str, list[ResourceKey]] = {}
    for contribution in contributions:
        for resource in contribution.resources:
            key = resource.key
            winner = objects.get(key)
            if winner is None:
                objects[key] = resource
                owners[key] = contribution.path
                continue
            duplicates.append(_duplicate(resource, contribution.path, winner, owners[key]))
            ignored.setdefault(contribution.path, []).append(key)
    return Merged(
        objects, owners, tuple(duplicates), {p: tuple(keys) for p, keys in ignored.items()}
    )


def update(
    merged: Merged,
    changes: Mapping[str, tuple[tuple[Resource, ...] | None, tuple[Resource, ...] | None]],
) -> Merged | None:
    """``merged`` with each changed file's objects replaced, or None if a full merge
    is needed. ``changes`` maps a path to its (previous, new) contribution."""
    if merged.ignored:
        shadowed = {key for keys in merged.ignored.values() for key in keys}
    else:
        shadowed = set()
    replaced: dict[ResourceKey, Resource] = {}
    owners = merged.owners
    for path, (before, after) in changes.items():
        if not before or not after or len(before) != len(after) or path in merged.ignored:
            return None
        keys = {r.key for r in after}
        if len(keys) != len(after) or keys != {r.key for r in before}:
            return None  # a duplicate within the file, or other objects than before
        for resource in after:
            key = resource.key
            if owners.get(key) != path or key in shadowed:
                return None
            replaced[key] = resource
    objects = dict(merged.objects)
    objects.update(replaced)
    return Merged(objects, owners, merged.duplicates, merged.ignored)


def same_set(a: Mapping[ResourceKey, Resource], b: Mapping[ResourceKey, Resource]) -> bool:
    """Whether two effective sets hold the same configuration (sources ignored)."""
    if a.keys() != b.keys():
        return False
    # Identity first: most objects survive a re-merge as the very same instance.
    return all(a[key] is b[key] or same_content(a[key], b[key]) for key in a)


def _duplicate(resource: Resource, path: str, winner: Resource, winner_path: str) -> Diagnostic:
    here = resource.source or SourceRef(path)
    there = winner.source or SourceRef(winner_path)
    where = "earlier in this file" if winner_path == path else f"in {winner_path}"
    line = f" (line {there.line})" if there.line else ""
    return Diagnostic(
        Severity.ERROR,
        f"duplicate {resource.kind} {resource.namespace}/{resource.name}: already defined "
        f"{where}{line}; this definition in {path} is ignored",
        here,
        resource.kind,
        resource.namespace,
        resource.name,
    )
