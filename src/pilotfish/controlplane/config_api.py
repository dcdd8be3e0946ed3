"""The configuration API: Kubernetes-style REST over the store.

Paths follow the Kubernetes API so that tools and habits carry over::

    /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>   GET PUT DELETE
    /apis/<group>/<version>/namespaces/<ns>/<plural>          GET (list) POST
    /apis/<group>/<version>/<plural>                          GET (all namespaces)

and the same under ``/api/v1/...`` for the core group (``services``).

Theory of operation
-------------------
A write body is a resource exactly as a user writes it in a file (JSON, or
YAML: the loader reads both). It goes through the same loader and validators
as a file (``api.loader.load_text``), named ``<request>``, so messages, field
paths and reasons are identical to ``pilotfish analyze``. Before loading, the
body is read once as plain data to check that it holds one object, to fill in
a missing ``metadata.namespace`` from the URL, and to drop
``metadata.resourceVersion`` (which the server reports, so that a document
read back and applied again is unchanged). Body/URL disagreements are added
to the loader's errors: a 400 lists every error at once. Reference checks
(dangling hosts, subsets, gateways; Gateways that Ingress and Gateway API
objects generate count as existing, as in ``analyze``) against the rest of
the store come back as ``Warning`` headers, as Kubernetes does. A single
write is never refused for them; ``POST /apis/pilotfish.io/v1/apply``
(``apply_api``, what ``pilotfish apply`` uses) writes a batch of objects
after the full analysis, and refuses Error-level findings.

Bodies are bounded by ``settings.parse_limits``: one larger than
``max_body_bytes`` is refused with 413 before more than that is read, and
the rest of the limits (alias expansion, depth, ``max_body_nodes``) apply
while it is parsed, as for a file (400 naming the limit and the line).

Reads return the document as its author wrote it (``raw``), never where it
came from (no file paths). Secrets are never served back whole: every value
of their ``data`` and ``stringData`` reads as ``<redacted>`` (keys and
``type`` stay visible), in single reads, lists, and write/delete responses.

Authentication is not done here: the HTTP API's middleware (``auth``)
admits only requests with the control plane's bearer token.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import yaml
from aiohttp import web
from multidict import CIMultiDict

from pilotfish.api.analysis import reference_findings
from pilotfish.api.core.secret import redact_document
from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.kinds import API_VERSIONS, DOCUMENT_KIND, KIND_INFO
from pilotfish.api.limits import ParseLimits
from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.api.yamlcompose import compose_documents
from pilotfish.api.yamlnodes import node_to_data
from pilotfish.controlplane.api_problem import Problem, read_body
from pilotfish.controlplane.apply_api import add_apply_api
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.controlplane.object_generation import with_generation
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.controlplane.validation_status import ValidationMessages
from pilotfish.store import Store, StoreError
from pilotfish.store._render import document_of

__all__ = ["CHANGE_HEADER", "REQUEST_SOURCE", "add_config_api"]

#: The file name diagnostics of a request body carry.
REQUEST_SOURCE = "<request>"
#: Response header of a write: ``created``, ``configured`` or ``unchanged``.
CHANGE_HEADER = "X-Pilotfish-Change"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _ControlPlane(Protocol):
    """What the API needs of the control plane (avoids importing the runner)."""

    @property
    def settings(self) -> ControlPlaneSettings: ...
    @property
    def store(self) -> Store: ...
    @property
    def generator(self) -> MeshGenerator: ...


def add_config_api(app: web.Application, cp: _ControlPlane) -> None:
    """Register the configuration API's routes on ``app`` (before it starts)."""
    api = _ConfigApi(cp)
    add_apply_api(app, cp)
    for prefix in ("/apis/{group}/{version}", "/api/{version}"):
        item = prefix + "/namespaces/{namespace}/{plural}/{name}"
        collection = prefix + "/namespaces/{namespace}/{plural}"
        app.router.add_get(item, api.wrap(api.read))
        app.router.add_put(item, api.wrap(api.put))
        app.router.add_delete(item, api.wrap(api.delete))
        app.router.add_get(collection, api.wrap(api.read_list))
        app.router.add_post(collection, api.wrap(api.post))
        app.router.add_get(prefix + "/{plural}", api.wrap(api.read_list))
    # Anything else under the API prefixes: a JSON 404.
    for prefix in ("/apis", "/api"):
        app.router.add_route("*", prefix + "{tail:(/.*)?}", api.wrap(api.unknown))


class _ConfigApi:
    def __init__(self, cp: _ControlPlane) -> None:
        self._cp = cp
        self._validation = ValidationMessages(cp.settings.domain_suffix)

    # -- plumbing --------------------------------------------------------------

    def wrap(self, handler: _Handler) -> _Handler:
        """``handler`` with ``Problem`` turned into JSON."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except Problem as problem:
                return problem.response()

        return wrapped

    @property
    def _store(self) -> Store:
        return self._cp.store

    def _with_status(self, doc: dict[str, Any], resource: Resource) -> dict[str, Any]:
        """``doc`` with the ``status`` the control plane computed for it, if any:
        the converters' (Gateway API and Ingress objects), as of the latest
        snapshot, and the analyzers' ``validationMessages`` (Istio's codes)."""
        snapshot = self._cp.generator.snapshot
        status = snapshot.conversion.statuses.get(resource.key)
        messages = self._validation.of(
            resource.key, self._store.revision, snapshot.mesh, self._store.list
        )
        if messages:
            status = {**(status or {}), "validationMessages": messages}
        return doc if status is None else {**doc, "status": status}

    # -- handlers ----------------------------------------------------------------

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        raise Problem(404, f"no such API path: {request.path}")

    async def read(self, request: web.Request) -> web.StreamResponse:
        target = _Target.of(request)
        resource = self._store.get(target.key())
        if resource is None:
            raise Problem(404, f"{target.describe()} not found")
        return web.json_response(self._with_status(_document(resource), resource))

    async def read_list(self, request: web.Request) -> web.StreamResponse:
        target = _Target.of(request)
        store = self._store
        items = store.list(target.kind, target.namespace or None)
        return web.json_response(
            {
                "apiVersion": target.api_version,
                "kind": f"{DOCUMENT_KIND.get(target.kind, target.kind)}List",
                "metadata": {"resourceVersion": str(store.revision)},
                "items": [self._with_status(_document(r), r) for r in items],
            }
        )

    async def put(self, request: web.Request) -> web.StreamResponse:
        target = _Target.of(request)
        resource, warnings = await self._load_body(request, target)
        return self._write(resource, warnings, create_only=False)

    async def post(self, request: web.Request) -> web.StreamResponse:
        target = _Target.of(request)
        resource, warnings = await self._load_body(request, target)
        return self._write(resource, warnings, create_only=True)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        target = _Target.of(request)
        store = self._store
        key = target.key()
        current = store.get(key)
        try:
            revision = store.delete(key)
        except KeyError:
            raise Problem(404, f"{target.describe()} not found") from None
        except StoreError as exc:
            raise Problem(409, str(exc), exc.diagnostics) from exc
        body = _document(current) if current is not None else {}
        return web.json_response(_with_revision(body, revision))

    # -- writing -----------------------------------------------------------------

    async def _load_body(
        self, request: web.Request, target: _Target
    ) -> tuple[Resource, list[Diagnostic]]:
        """The validated resource of the body, or a 400 listing every error."""
        limits = self._cp.settings.parse_limits.for_body()
        text = await read_body(request, limits.max_body_bytes)
        text, data = _prepare_body(text, target.namespace, limits)
        problems = _mismatches(data, target) if data is not None else []
        loaded = load_text(text, REQUEST_SOURCE, limits)
        problems += loaded.diagnostics
        errors = [d for d in problems if d.is_error]
        if errors:
            first = errors[0].format()
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise Problem(400, f"invalid {target.kind}: {first}{more}", problems)
        if len(loaded.resources) != 1:
            raise Problem(400, "the request body must hold exactly one object")
        resource = loaded.resources[0]
        warnings = [d for d in problems if not d.is_error]
        warnings += self._reference_warnings(resource)
        return resource, warnings

    def _reference_warnings(self, resource: Resource) -> list[Diagnostic]:
        """Dangling references of ``resource`` against what the store would hold."""
        others = [r for r in self._store.list() if r.key != resource.key]
        suffix = self._cp.settings.domain_suffix
        root = self._cp.generator.snapshot.mesh.root_namespace
        return [
            d
            for d in reference_findings([*others, resource], suffix, root)
            if (d.kind, d.namespace, d.name) == (resource.kind, resource.namespace, resource.name)
        ]

    def _write(
        self, resource: Resource, warnings: list[Diagnostic], *, create_only: bool
    ) -> web.Response:
        store = self._store
        current = store.get(resource.key)
        if create_only and current is not None:
            raise Problem(409, f"{resource.key} already exists")
        resource = with_generation(resource, current)
        before = store.revision
        try:
            revision = store.apply(resource)
        except StoreError as exc:
            raise Problem(409, str(exc), exc.diagnostics) from exc
        if current is None:
            change, status = "created", 201
        else:
            change, status = ("unchanged" if revision == before else "configured"), 200
        stored = store.get(resource.key) or resource
        headers: CIMultiDict[str] = CIMultiDict({CHANGE_HEADER: change})
        for warning in warnings:
            headers.add("Warning", _warning_header(warning))
        return web.json_response(
            _with_revision(_document(stored), revision), status=status, headers=headers
        )


class _Target:
    """What a URL names: kind, apiVersion, namespace ("" for all) and name ("" for none)."""

    def __init__(self, kind: str, api_version: str, namespace: str, name: str) -> None:
        self.kind = kind
        self.api_version = api_version
        self.namespace = namespace
        self.name = name

    @classmethod
    def of(cls, request: web.Request) -> _Target:
        info = request.match_info
        group = info.get("group", "")
        version = info["version"]
        api_version = f"{group}/{version}" if group else version
        resource = info["plural"]
        kind = _kind_of_plural(resource, group)
        if kind is None:
            raise Problem(404, f"the server does not serve resource {resource!r}")
        if api_version not in API_VERSIONS.get(kind, ()):
            accepted = ", ".join(sorted(API_VERSIONS.get(kind, ())))
            raise Problem(
                404, f"{resource} are not served under {api_version!r} (served under: {accepted})"
            )
        return cls(kind, api_version, info.get("namespace", ""), info.get("name", ""))

    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def _kind_of_plural(resource: str, group: str) -> str | None:
    """The kind served under the plural ``resource`` in ``group`` (exact spelling only)."""
    for kind, info in KIND_INFO.items():
        if info.plural == resource and info.group == group:
            return kind
    for kind, info in KIND_INFO.items():  # the group is checked against the version next
        if info.plural == resource:
            return kind
    return None


def _prepare_body(
    text: str, namespace: str, limits: ParseLimits
) -> tuple[str, dict[str, Any] | None]:
    """``(text to load, the body as data)``.

    The text is rewritten (as JSON) only when the namespace must be filled in
    or ``resourceVersion`` dropped; otherwise the user's text is loaded as is,
    so its line numbers stay meaningful. ``data`` is None when the body is not
    one mapping; the loader then reports what is wrong with it, or the caller
    that there is not exactly one object.
    """
    try:
        roots = list(compose_documents(text, limits))
        if len(roots) != 1:
            raise Problem(400, "the request body must hold exactly one object")
        data = node_to_data(roots[0], max_depth=limits.max_depth).value
    except yaml.YAMLError:  # syntax, a crossed limit, a tag without constructor
        return text, None  # the loader reports it with its line
    if not isinstance(data, dict):
        return text, None
    if data.get("kind") == "List":
        raise Problem(400, "the request body must hold exactly one object, not a List")
    meta = data.get("metadata")
    if not isinstance(meta, dict):
        return text, data
    changed = False
    if "resourceVersion" in meta:
        del meta["resourceVersion"]
        changed = True
    if namespace and meta.get("namespace") is None:
        meta["namespace"] = namespace
        changed = True
    if changed:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    return text, data


def _mismatches(data: Mapping[str, Any], target: _Target) -> list[Diagnostic]:
    """Errors for each place where the body disagrees with the URL."""
    meta = data.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    found: list[Diagnostic] = []

    def error(field: str, message: str) -> None:
        found.append(
            Diagnostic(
                Severity.ERROR,
                message,
                SourceRef(REQUEST_SOURCE),
                str(data.get("kind", "")),
                str(meta.get("namespace", target.namespace)) if name else "",
                str(name),
                field,
            )
        )

    kind = data.get("kind")
    expected = DOCUMENT_KIND.get(target.kind, target.kind)
    if isinstance(kind, str) and kind != expected:
        error("kind", f"kind {kind!r} does not match the URL, which names {expected}")
    api_version = data.get("apiVersion")
    if isinstance(api_version, str) and api_version != target.api_version:
        error(
            "apiVersion",
            f"apiVersion {api_version!r} does not match the URL's {target.api_version!r}",
        )
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and target.namespace and namespace != target.namespace:
        error(
            "metadata.namespace",
            f"namespace {namespace!r} does not match the URL's {target.namespace!r}",
        )
    if target.name and name and name != target.name:
        error("metadata.name", f"name {name!r} does not match the URL's {target.name!r}")
    return found


def _document(resource: Resource) -> dict[str, Any]:
    """The resource as its author wrote it (identity fields from the resource).

    This is the one place objects leave the API, so Secrets are redacted here.
    """
    return redact_document(document_of(resource))


def _with_revision(doc: dict[str, Any], revision: int) -> dict[str, Any]:
    meta = dict(doc.get("metadata") or {})
    meta["resourceVersion"] = str(revision)
    return {**doc, "metadata": meta}


def _warning_header(diagnostic: Diagnostic) -> str:
    """A ``Warning`` header value (RFC 7234 form, as Kubernetes sends them)."""
    # Formatted as an error only to leave out the "warning: " prefix and the
    # request's own file name: the header already says it is a warning.
    text = Diagnostic(
        Severity.ERROR,
        diagnostic.message,
        None,
        diagnostic.kind,
        diagnostic.namespace,
        diagnostic.name,
        diagnostic.field,
    ).format()
    # Header values are Latin-1 on the wire; escape the rest rather than fail.
    safe = text.encode("ascii", "backslashreplace").decode("ascii")
    return '299 pilotfish "' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'
