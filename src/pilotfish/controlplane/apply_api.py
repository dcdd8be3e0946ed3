"""``POST /apis/pilotfish.io/v1/apply``: write several objects as one change, analyzed.

The body lists the objects with where each came from::

    {"items": [{"object": {...}, "file": "reviews.yaml", "line": 12}, ...]}

Theory of operation
-------------------
1. Schema: every object is loaded and validated as a ``PUT`` body is (the
   same loader as files). Any error: 400 listing every error of every
   object, nothing written. There is no way around this.
2. Analysis (``admission.judge``): the analyzers of ``pilotfish analyze``, at
   Istio's levels, over the store with the applied objects in place; only
   findings about the applied objects count. An Error-level finding: 422 with
   every finding, nothing written, unless ``?force=true``, which writes and
   still reports them. Warnings and info are reported and written through.
3. Write: all objects through ``Store.apply_all`` (all or none; one revision).
   ``?dryRun=All`` (Kubernetes' spelling) stops before writing and reports
   what would have happened.

Every finding and error carries ``item`` (the index of its object in the
request) and, as its ``file`` and ``line``, the position the request gave for
that object, so a client maps it back to its own file; the ``field`` path
lets it find the exact line. The result names, per object, ``created``,
``configured`` or ``unchanged``, as a ``PUT`` would (in a dry run: what it
would do). A batch is bounded as a configuration file is (``max_file_bytes``,
``max_nodes``, ``max_documents`` items), not as one object's body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import yaml
from aiohttp import web

from pilotfish.api.analysis.output import level_name
from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.limits import ParseLimits
from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.api.yamlcompose import compose_documents
from pilotfish.api.yamlnodes import node_to_data
from pilotfish.controlplane.admission import Verdict, judge
from pilotfish.controlplane.api_problem import Problem, read_body
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.controlplane.object_generation import with_generation
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store import Store, StoreError
from pilotfish.store._common import same_content

__all__ = ["APPLY_PATH", "add_apply_api"]

APPLY_PATH = "/apis/pilotfish.io/v1/apply"

#: How an item without a ``file`` is named in findings.
_REQUEST_SOURCE = "<request>"
#: Analyses in a worker thread before one on the event loop (see ``_judge``).
_THREADED_TRIES = 3


class _ControlPlane(Protocol):
    @property
    def settings(self) -> ControlPlaneSettings: ...
    @property
    def store(self) -> Store: ...
    @property
    def generator(self) -> MeshGenerator: ...


@dataclass(frozen=True, slots=True)
class _Item:
    index: int
    data: dict[str, Any]
    source: SourceRef


def add_apply_api(app: web.Application, cp: _ControlPlane) -> None:
    """Register the batch apply route (before any catch-all under ``/apis``)."""
    app.router.add_post(APPLY_PATH, _ApplyApi(cp).apply)


class _ApplyApi:
    def __init__(self, cp: _ControlPlane) -> None:
        self._cp = cp

    async def apply(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._apply(request)
        except Problem as problem:
            return problem.response()

    async def _apply(self, request: web.Request) -> web.Response:
        dry_run, force = _options(request.query)
        limits = self._cp.settings.parse_limits
        text = await read_body(request, limits.max_file_bytes)
        items = _items(text, limits)
        resources, notes = _load(items, limits)
        store = self._cp.store
        where = {r.key: item for r, item in zip(resources, items, strict=True)}
        verdict = await self._judge(resources)
        # From here to the write nothing awaits: the store is the one judged.
        findings = notes + [_located(d, where) for d in verdict.findings]
        body: dict[str, Any] = {"dryRun": dry_run, "findings": findings}
        if verdict.refused and not force:
            errors = len(verdict.errors)
            body["error"] = (
                f"refused: {errors} Error-level finding(s) about the applied objects; "
                "nothing was written (force=true writes anyway)"
            )
            body["results"] = []
            return web.json_response(body, status=422)
        planned = [self._plan(r) for r in resources]
        if not dry_run:
            try:
                store.apply_all([r for r, _ in planned])
            except StoreError as exc:
                raise _refused_by_store(exc, where) from exc
        body["results"] = [
            {
                "item": where[r.key].index,
                "apiVersion": r.api_version,
                "kind": r.kind,
                "namespace": r.namespace,
                "name": r.name,
                "change": change,
            }
            for r, change in planned
        ]
        body["resourceVersion"] = str(store.revision)
        return web.json_response(body)

    async def _judge(self, resources: Sequence[Resource]) -> Verdict:
        """The verdict on ``resources`` over the store as it is when this returns.

        Analysis takes a while on a large store (about 0.4 s for 3 000 objects),
        so it runs in a worker thread and the event loop keeps serving proxies;
        the store's objects are immutable, so the thread reads a consistent
        list. If the store changed meanwhile (a file edit), the analysis is
        redone on the new contents; after a few tries, on the loop itself,
        where nothing can change under it.
        """
        store, suffix = self._cp.store, self._cp.settings.domain_suffix
        for _ in range(_THREADED_TRIES):
            revision, mesh = store.revision, self._cp.generator.snapshot.mesh
            verdict = await asyncio.to_thread(judge, resources, store.list(), suffix, mesh)
            if store.revision == revision:
                return verdict
        return judge(resources, store.list(), suffix, self._cp.generator.snapshot.mesh)

    def _plan(self, resource: Resource) -> tuple[Resource, str]:
        """``resource`` as it will be stored (the server's generation), and what
        writing it changes: ``created``, ``configured`` or ``unchanged``."""
        current = self._cp.store.get(resource.key)
        stored = with_generation(resource, current)
        if current is None:
            return stored, "created"
        return stored, "unchanged" if same_content(current, stored) else "configured"


def _options(query: Mapping[str, str]) -> tuple[bool, bool]:
    """``(dry run, force)`` from the query; 400 for values that mean neither."""
    dry = query.get("dryRun")
    if dry not in (None, "All"):
        raise Problem(400, f"dryRun={dry!r}: the only value is 'All' (as in Kubernetes)")
    force = query.get("force", "false")
    if force not in ("true", "false"):
        raise Problem(400, f"force={force!r}: use 'true' or 'false'")
    return dry == "All", force == "true"


def _items(text: str, limits: ParseLimits) -> list[_Item]:
    """The request's items, read within ``limits`` (a batch is bounded as a file)."""
    try:
        roots = list(compose_documents(text, limits))
        data = node_to_data(roots[0], max_depth=limits.max_depth).value if len(roots) == 1 else None
    except yaml.YAMLError as exc:
        raise Problem(400, f"the request body is not valid JSON: {exc}") from None
    raw = data.get("items") if isinstance(data, dict) else None
    if not isinstance(raw, list) or not raw:
        raise Problem(400, 'the request body must be {"items": [{"object": {...}}, ...]}')
    if len(raw) > limits.max_documents:
        raise Problem(400, f"more than {limits.max_documents} objects in one request (limit)")
    items: list[_Item] = []
    for index, entry in enumerate(raw):
        obj = entry.get("object") if isinstance(entry, dict) else None
        if not isinstance(obj, dict):
            raise Problem(400, f"items[{index}]: 'object' must be a mapping (one object)")
        file, line = entry.get("file"), entry.get("line")
        source = SourceRef(
            file if isinstance(file, str) and file else _REQUEST_SOURCE,
            line if isinstance(line, int) and not isinstance(line, bool) and line > 0 else 0,
        )
        items.append(_Item(index, obj, source))
    return items


def _load(
    items: Sequence[_Item], limits: ParseLimits
) -> tuple[list[Resource], list[dict[str, Any]]]:
    """Every item loaded and validated; 400 listing every error if any has one.

    Returns the resources (in item order) and the loader's other notes, as findings.
    """
    resources: list[Resource] = []
    problems: list[tuple[Diagnostic, _Item]] = []
    seen: dict[ResourceKey, _Item] = {}
    for item in items:
        doc = dict(item.data)
        if doc.get("kind") == "List":
            problems.append((_error(item, "kind", "one object per item, not a List"), item))
            continue
        meta = doc.get("metadata")
        if isinstance(meta, dict) and "resourceVersion" in meta:
            doc["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
        loaded = load_text(json.dumps(doc, default=str), _REQUEST_SOURCE, limits)
        problems += [(d, item) for d in loaded.diagnostics]
        if not loaded.resources and loaded.ok:
            why = "; ".join(d.message for d in loaded.diagnostics) or "empty"
            problems.append((_error(item, "", f"not an object Pilotfish serves: {why}"), item))
        for resource in loaded.resources:
            earlier = seen.get(resource.key)
            if earlier is not None:
                message = f"{resource.key} is also items[{earlier.index}] of this request"
                problems.append((_error(item, "metadata.name", message, resource), item))
                continue
            seen[resource.key] = item
            resources.append(resource)
    errors = [(d, item) for d, item in problems if d.is_error]
    if errors:
        first = _relocated(*errors[0]).format()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        body = {
            "error": f"invalid objects: {first}{more}",
            "errors": [_json(_relocated(d, item), item.index) for d, item in errors],
            "warnings": [_json(_relocated(d, i), i.index) for d, i in problems if not d.is_error],
        }
        raise _Invalid(body)
    notes = [_json(_relocated(d, item), item.index) for d, item in problems]
    return resources, notes


class _Invalid(Problem):
    """A 400 (or 409) whose body already lists errors with their items."""

    def __init__(self, body: dict[str, Any], status: int = 400) -> None:
        super().__init__(status, str(body["error"]))
        self.body = body

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status)


def _refused_by_store(exc: StoreError, where: Mapping[ResourceKey, _Item]) -> Problem:
    """409: the store could not take the batch (nothing was written); the
    object it refused, if it names one, as an error of its item."""
    key = exc.key
    item = where.get(key) if key is not None else None
    if key is None or item is None:
        return Problem(409, str(exc), exc.diagnostics)
    diagnostic = Diagnostic(
        Severity.ERROR, str(exc), item.source, key.kind, key.namespace, key.name
    )
    body = {
        "error": f"nothing was written: {exc}",
        "errors": [_json(diagnostic, item.index)],
        "warnings": [],
    }
    return _Invalid(body, status=409)


def _error(item: _Item, field: str, message: str, resource: Resource | None = None) -> Diagnostic:
    meta = item.data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return Diagnostic(
        Severity.ERROR,
        message,
        item.source,
        resource.kind if resource else str(item.data.get("kind", "")),
        resource.namespace if resource else str(meta.get("namespace", "")),
        resource.name if resource else str(meta.get("name", "")),
        field,
    )


def _relocated(diagnostic: Diagnostic, item: _Item) -> Diagnostic:
    """``diagnostic`` at the position the request gave for its object: lines in
    the request's JSON mean nothing to the client, its ``field`` does."""
    return replace(diagnostic, source=item.source)


def _located(finding: Diagnostic, where: Mapping[ResourceKey, _Item]) -> dict[str, Any]:
    item = where.get(ResourceKey(finding.kind, finding.namespace, finding.name))
    if item is None:  # cluster-scoped objects are named without a namespace
        item = next(
            (i for k, i in where.items() if (k.kind, k.name) == (finding.kind, finding.name)),
            None,
        )
    if item is None:
        return _json(finding, None)
    return _json(_relocated(finding, item), item.index)


def _json(diagnostic: Diagnostic, index: int | None) -> dict[str, Any]:
    out: dict[str, Any] = dict(diagnostic.to_json())
    out["level"] = level_name(diagnostic.severity)
    if index is not None:
        out["item"] = index
    return out
