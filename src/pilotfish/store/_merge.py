"""Combining the objects of many files into one effective set.

Each file contributes the objects of its last good load (a file that was
never good contributes nothing). Files are visited in precedence order; the
first definition of a kind/namespace/name wins and every later one is ignored
with an error naming both places.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store._common import same_content

__all__ = ["Contribution", "Merged", "merge", "same_set"]


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
