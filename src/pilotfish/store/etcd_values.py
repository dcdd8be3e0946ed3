"""What an etcd value holds: the object as a JSON document, as Kubernetes stores it.

The document is the user's own (``raw``: field spelling and order kept) with
apiVersion, kind, name and namespace taken from the object, as the file store
renders it. Source lines are not kept: a bad write is reported when it is
applied (with the lines of the applied file), and an object read back from
etcd names its key as its source (``etcd:/registry/...``).

A value written by someone else (etcdctl, another tool) may be anything:
``decode`` returns the diagnostics instead of an object when it is not one
valid object, or names another object than its key does.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.loader import LoadResult
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store._common import same_content
from pilotfish.store._render import document_of
from pilotfish.store.base import StoreError

__all__ = ["TextLoader", "decode", "encode", "source_name"]

TextLoader = Callable[[str, str], LoadResult]


def source_name(etcd_key: str) -> str:
    """How diagnostics and ``Resource.source`` name the etcd key ``etcd_key``."""
    return f"etcd:{etcd_key}"


def encode(resource: Resource, etcd_key: str, load_text: TextLoader) -> bytes:
    """The value to store for ``resource``, proven to load back as the same object.

    The user's own document is preferred; if it no longer matches the typed
    object, the typed object is written instead. StoreError if neither survives.
    """
    candidates = [resource]
    if resource.raw:
        candidates.append(
            Resource(resource.api_version, resource.kind, resource.metadata, resource.spec)
        )
    loaded = LoadResult()
    for candidate in candidates:
        text = json.dumps(document_of(candidate), ensure_ascii=False, separators=(",", ":"))
        loaded = load_text(text, source_name(etcd_key))
        back = loaded.resources
        if loaded.ok and len(back) == 1 and same_content(back[0], resource):
            return text.encode("utf-8")
    errors = [d for d in loaded.diagnostics if d.is_error]
    raise StoreError(f"{resource.key} does not survive storing as JSON", errors, resource.key)


def decode(
    etcd_key: str, expected: ResourceKey | None, value: bytes, load_text: TextLoader
) -> tuple[Resource | None, tuple[Diagnostic, ...]]:
    """The object stored at ``etcd_key`` (None when unusable) and the problems found."""
    where = source_name(etcd_key)
    if expected is None:
        return None, (_error(where, "this key is not /<group>/<plural>/<namespace>/<name>"),)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None, (_error(where, "the value is not UTF-8 text"),)
    loaded = load_text(text, where)
    if not loaded.ok:
        return None, loaded.diagnostics
    if len(loaded.resources) != 1:
        found = len(loaded.resources)
        return None, (_error(where, f"the value holds {found} objects; a key holds one"),)
    resource = loaded.resources[0]
    if resource.key != expected:
        return None, (_error(where, f"the value is {resource.key}, but the key names {expected}"),)
    return resource, loaded.diagnostics


def _error(where: str, message: str) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, SourceRef(where))
