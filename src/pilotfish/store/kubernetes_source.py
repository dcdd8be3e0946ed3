"""Kubernetes API list and watch responses, turned into Pilotfish resources (sans-IO).

Theory of operation: a Kubernetes config source follows each kind it serves
the way an informer does: one list (``GET /apis/<group>/<version>/<plural>``,
possibly in pages), then a watch from the list's ``resourceVersion``
(``?watch=true&resourceVersion=...&allowWatchBookmarks=true``). This module is
the part of that which needs no network: ``KubernetesSource`` is fed the
decoded JSON of list responses and watch events by whoever does the HTTP, and
keeps the objects, the ``resourceVersion`` of each kind and the diagnostics.

- Each object goes through the loader (``api.loader``), so it is typed and
  validated exactly as a file would be. An object that does not load is
  reported under its key (field and reason) and the object it replaced keeps
  serving, as with the file and etcd stores; deleting it removes both.
- A list says what exists: objects of that kind missing from it are gone
  (they were deleted while the watch was down).
- ``BOOKMARK`` carries only a ``resourceVersion``: it moves the kind's
  position, so a reconnect resumes from there instead of an older one the
  server may have compacted away.
- ``ERROR`` with code 410 (Gone, "too old resource version") means the
  events since the kind's position are lost: the result asks for a relist
  and the position is forgotten. Another ERROR is reported; the watch is
  retried from the same position.

``resourceVersion`` is opaque (Kubernetes forbids comparing it), so it is
stored and sent back, never ordered. Every change is handed to a ``Sink``
(a ``MemoryStore`` is one), so the rest of Pilotfish sees an ordinary
``Store``. The etcd watch's ``Mirror`` does not fit here: it folds etcd key
values at numeric revisions, and the API server speaks in typed objects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.kinds import KIND_INFO, PREFERRED_API_VERSION
from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource, ResourceKey

__all__ = [
    "CLUSTER_SCOPED_KINDS",
    "Change",
    "KubernetesSource",
    "Sink",
    "api_path",
    "list_params",
    "watch_params",
]

#: Kinds Pilotfish serves that Kubernetes keeps outside namespaces.
CLUSTER_SCOPED_KINDS = frozenset({"Namespace", "GatewayClass", "IngressClass"})

# The page size informers ask for; the server may return fewer.
_PAGE_SIZE = 500
# Status.code of an ERROR event whose resourceVersion is too old.
_GONE = 410


def api_path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    """The REST path of ``kind`` (all namespaces, one namespace, or one object).

    ``/api/v1/services``, ``/apis/networking.istio.io/v1/namespaces/shop/virtualservices``;
    the version is the one Pilotfish writes. KeyError for a kind Pilotfish does not serve.
    """
    info = KIND_INFO[kind]
    version = PREFERRED_API_VERSION[kind]
    root = f"/apis/{version}" if info.group else f"/api/{version}"
    scope = f"/namespaces/{namespace}" if namespace and kind not in CLUSTER_SCOPED_KINDS else ""
    tail = f"/{name}" if name else ""
    return f"{root}{scope}/{info.plural}{tail}"


def list_params(continue_token: str = "") -> dict[str, str]:
    """Query of a list request (one page; ``continue_token`` for the next)."""
    params = {"limit": str(_PAGE_SIZE)}
    if continue_token:
        params["continue"] = continue_token
    return params


def watch_params(resource_version: str) -> dict[str, str]:
    """Query of a watch from ``resource_version`` (the list's, or the last event's)."""
    return {
        "watch": "true",
        "resourceVersion": resource_version,
        "allowWatchBookmarks": "true",
    }


class Sink(Protocol):
    """Where changes go: a ``MemoryStore`` qualifies."""

    def apply_all(self, resources: Sequence[Resource]) -> int: ...

    def delete(self, key: ResourceKey) -> int: ...


@dataclass(frozen=True, slots=True)
class Change:
    """What one list or event did."""

    applied: tuple[Resource, ...] = ()
    removed: tuple[ResourceKey, ...] = ()
    #: The kind's events are lost (410 Gone): list it again before watching.
    relist: bool = False
    #: An ERROR event other than 410, or an event that could not be read.
    problem: str = ""


class KubernetesSource:
    """Objects, positions and diagnostics of the kinds followed (module docstring)."""

    def __init__(self, kinds: Iterable[str], sink: Sink | None = None) -> None:
        self._kinds = tuple(kinds)
        for kind in self._kinds:
            KIND_INFO[kind]  # KeyError now rather than at the first event
        self._sink = sink
        self._objects: dict[ResourceKey, Resource] = {}
        self._problems: dict[ResourceKey, tuple[Diagnostic, ...]] = {}
        self._versions: dict[str, str] = {}

    @property
    def kinds(self) -> tuple[str, ...]:
        return self._kinds

    def resource_version(self, kind: str) -> str:
        """Where a watch of ``kind`` resumes; "" when it must be listed first."""
        return self._versions.get(kind, "")

    def get(self, key: ResourceKey) -> Resource | None:
        return self._objects.get(key)

    def objects(self) -> list[Resource]:
        return [self._objects[k] for k in sorted(self._objects)]

    def diagnostics(self) -> list[Diagnostic]:
        return [d for k in sorted(self._problems) for d in self._problems[k]]

    def fold_list(self, kind: str, pages: Sequence[Mapping[str, Any]]) -> Change:
        """The pages of one list of ``kind`` (``metadata.continue`` chains them)."""
        if not pages:
            raise ValueError("a list has at least one page")
        listed: dict[ResourceKey, Mapping[str, Any]] = {}
        for page in pages:
            item_version, item_kind = _item_type(page)
            for item in page.get("items") or []:
                # Built-in kinds' list items carry no apiVersion/kind: they take the list's.
                obj = {"apiVersion": item_version, "kind": item_kind, **item}
                listed[self._key_of(kind, obj)] = obj
        applied: list[Resource] = []
        for key, document in listed.items():
            resource = self._load(kind, key, document)
            if resource is not None:
                applied.append(resource)
        removed = [k for k in self._keys_of(kind) if k not in listed]
        for key in removed:
            self._forget(key)
        # All pages of a list share the first page's resourceVersion (one snapshot).
        self._versions[kind] = str(_metadata(pages[0]).get("resourceVersion", ""))
        return self._emit(applied, removed)

    def fold_event(self, kind: str, event: Mapping[str, Any]) -> Change:
        """One watch event of ``kind``."""
        kind_of_event = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, Mapping):
            return Change(problem=f"{kind} watch: event without an object")
        if kind_of_event == "ERROR":
            return self._error(kind, obj)
        version = str(_metadata(obj).get("resourceVersion", ""))
        if kind_of_event == "BOOKMARK":
            if version:
                self._versions[kind] = version
            return Change()
        if kind_of_event not in ("ADDED", "MODIFIED", "DELETED"):
            return Change(problem=f"{kind} watch: unknown event type {kind_of_event!r}")
        key = self._key_of(kind, obj)
        if version:
            self._versions[kind] = version
        if kind_of_event == "DELETED":
            known = key in self._objects
            self._forget(key)
            return self._emit([], [key] if known else [])
        resource = self._load(kind, key, obj)
        return self._emit([resource] if resource is not None else [], [])

    def _error(self, kind: str, status: Mapping[str, Any]) -> Change:
        message = str(status.get("message", "")) or str(status.get("reason", ""))
        if status.get("code") == _GONE:
            self._versions.pop(kind, None)
            return Change(relist=True, problem=f"{kind} watch expired: {message}")
        return Change(problem=f"{kind} watch error {status.get('code', '?')}: {message}")

    def _load(self, kind: str, key: ResourceKey, obj: Mapping[str, Any]) -> Resource | None:
        """The object as a Resource if it loads as one of ``kind``; else its problems are
        recorded under ``key`` and the last good object (if any) stays."""
        where = _source(key)
        loaded = load_text(json.dumps(obj, ensure_ascii=False), where)
        # Lines of a JSON text made here mean nothing to anyone: point at the object.
        found = tuple(dataclasses.replace(d, source=SourceRef(where)) for d in loaded.diagnostics)
        resource = loaded.resources[0] if loaded.ok and len(loaded.resources) == 1 else None
        if resource is not None and resource.kind != kind:
            found += (_error(where, key, f"a {kind} watch sent a {resource.kind}"),)
            resource = None
        elif resource is None and not any(d.is_error for d in found):
            found += (_error(where, key, "the object did not load as one resource"),)
        if found:
            self._problems[key] = found
        else:
            self._problems.pop(key, None)
        if resource is None:
            return None
        resource = dataclasses.replace(resource, source=SourceRef(where), lines={})
        self._objects[key] = resource
        return resource

    def _key_of(self, kind: str, obj: Mapping[str, Any]) -> ResourceKey:
        meta = _metadata(obj)
        # The loader's own default namespace, so keys agree with loaded resources.
        namespace = str(meta.get("namespace") or "default")
        return ResourceKey(kind, namespace, str(meta.get("name", "")))

    def _keys_of(self, kind: str) -> list[ResourceKey]:
        return [k for k in {*self._objects, *self._problems} if k.kind == kind]

    def _forget(self, key: ResourceKey) -> None:
        self._objects.pop(key, None)
        self._problems.pop(key, None)

    def _emit(self, applied: list[Resource], removed: list[ResourceKey]) -> Change:
        if self._sink is not None:
            if applied:
                self._sink.apply_all(applied)
            for key in removed:
                # A key that never loaded is not in the sink: nothing to delete there.
                with contextlib.suppress(KeyError):
                    self._sink.delete(key)
        return Change(tuple(applied), tuple(removed))


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _item_type(page: Mapping[str, Any]) -> tuple[str, str]:
    """apiVersion and kind of a list's items: ``VirtualServiceList`` -> ``VirtualService``."""
    list_kind = str(page.get("kind", ""))
    return str(page.get("apiVersion", "")), list_kind.removesuffix("List")


def _source(key: ResourceKey) -> str:
    namespace = None if key.kind in CLUSTER_SCOPED_KINDS else key.namespace
    return f"kubernetes:{api_path(key.kind, namespace, key.name)}"


def _error(where: str, key: ResourceKey, message: str) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, SourceRef(where), key.kind, key.namespace, key.name)
