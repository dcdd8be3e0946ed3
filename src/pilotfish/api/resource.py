"""The envelope the store holds: a validated, typed object plus where it came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from pilotfish.api.base import ObjectMeta
from pilotfish.api.diagnostics import SourceRef

__all__ = ["Resource", "ResourceKey"]


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """Identity of a resource: kinds are unique across the groups Pilotfish serves."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Resource:
    """One validated configuration object.

    ``spec`` is the kind's typed schema object (a frozen pydantic model);
    ``raw`` is the document as the user wrote it (for ``get -o yaml``).
    ``lines`` maps dotted field paths to 1-based lines in ``source.file`` so a
    later stage (reference checks) can point at the exact line.
    """

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: BaseModel
    source: SourceRef | None = None
    # ``repr=False``: the raw document may hold Secret values; never print it.
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.metadata.namespace, self.metadata.name)

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def name(self) -> str:
        return self.metadata.name

    def line_of(self, field_path: str) -> int:
        """Best line for a field path: the field itself, else its nearest parent."""
        path = field_path
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.source.line if self.source else 0
