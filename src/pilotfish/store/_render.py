"""Turning a resource back into a file, and writing files so a crash never leaves half of one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import yaml

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
    head = {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": meta}
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
    """Replace ``path`` with ``data`` all at once.

    The bytes go to a hidden temporary file in the same directory (so the
    watcher never loads it), are flushed to disk, and the file is renamed over
    ``path``; the directory is then synced so the rename itself survives a
    crash. Readers see either the old file or the new one, never a mix.
    ``private`` files (Secrets) are written with mode 0600.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # Secrets are readable by their owner only, whatever the file had before.
        os.chmod(tmp, 0o600 if private else _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_directory(directory)


def _mode_for(path: str) -> int:
    """Keep the permissions of the file being replaced; new files are world-readable
    like any file a text editor would create (``mkstemp`` alone gives 0600)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o644


def remove_file(path: str) -> None:
    """Delete ``path`` and make the removal durable."""
    os.unlink(path)
    _sync_directory(os.path.dirname(path) or ".")


def _sync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # some platforms cannot open directories; the data itself is synced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
