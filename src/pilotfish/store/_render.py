"""Turning a resource back into a file, and writing files so a crash never leaves half of one."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import yaml

from pilotfish import fsutil
from pilotfish.api.kinds import DOCUMENT_KIND
from pilotfish.api.resource import Resource

__all__ = ["atomic_write", "document_of", "remove_file", "render"]


def document_of(resource: Resource) -> dict[str, Any]:
    """The plain document for ``resource``.

    The user's own document (``raw``) when there is one, so that fields keep
    their spelling and order; otherwise built from the typed model. Either way
    ``apiVersion``, ``kind``, ``metadata.name`` and ``metadata.namespace`` are
    taken from the resource itself, so the file always names the object it
    holds.
    """
    if resource.raw:
        doc: dict[str, Any] = _plain(resource.raw)
    else:
        doc = {"spec": resource.spec.model_dump(mode="json", by_alias=True, exclude_none=True)}
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not resource.raw:
        meta = resource.metadata.model_dump(mode="json", by_alias=True, exclude_none=True)
        # Empty label and annotation maps are noise in a hand-readable file.
        meta = {k: v for k, v in meta.items() if v != {}}
    meta["name"] = resource.metadata.name
    meta["namespace"] = resource.metadata.namespace
    kind = DOCUMENT_KIND.get(resource.kind, resource.kind)
    head = {"apiVersion": resource.api_version, "kind": kind, "metadata": meta}
    rest = {k: v for k, v in doc.items() if k not in head}
    return {**head, **rest}


def render(resource: Resource, *, as_json: bool = False) -> str:
    """The text of a file holding only ``resource`` (YAML, or JSON if ``as_json``)."""
    doc = document_of(resource)
    if as_json:
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    text: str = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return text


def _plain(value: Any) -> Any:
    """Deep copy into plain dicts and lists (``raw`` may hold read-only mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def atomic_write(path: str, data: bytes, *, private: bool = False) -> None:
    """Replace ``path`` with ``data`` all at once (``fsutil.atomic_write``).

    A hidden temporary file in the same directory, so the watcher never loads
    it; the directory is created if missing. ``private`` files (Secrets) are
    written with mode 0600 whatever the file had before; others keep the
    replaced file's mode (new ones: 0644, as a text editor would create them).
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fsutil.atomic_write(path, data, mode=0o600 if private else None)


def remove_file(path: str) -> None:
    """Delete ``path`` and make the removal durable."""
    fsutil.remove_durably(path)
