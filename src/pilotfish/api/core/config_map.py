"""Kubernetes ``v1`` ConfigMap: accepted so that real manifests load; the mesh reads none.

Like a Secret, a ConfigMap keeps its contents at the top level of the document
(``TOP_LEVEL_FIELDS``). Values are strings (``data``) or base64 (``binaryData``),
as Kubernetes requires; nothing downstream consumes them.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from pilotfish.api.base import ApiModel

__all__ = ["TOP_LEVEL_FIELDS", "ConfigMapSpec"]

#: The document's top-level keys that form a ConfigMap's "spec" (YAML spelling).
TOP_LEVEL_FIELDS: Final = frozenset({"data", "binaryData", "immutable"})


class ConfigMapSpec(ApiModel):
    data: dict[str, str] = Field(default_factory=dict)
    binary_data: dict[str, str] = Field(default_factory=dict)
    immutable: bool | None = None
