"""Load resources from YAML or JSON text, remembering file and line.

Theory of operation: the text is composed into YAML node trees (JSON is
parsed by the same YAML parser so it gets line numbers too). Each document,
or each item of a ``kind: List`` / top-level JSON array, is walked once into
plain data plus a field-path -> line map (``yamlnodes``). The envelope
(``apiVersion``, ``kind``, ``metadata``) is checked by hand so that every
problem gets a precise message; ``metadata`` and ``spec`` are then validated
by their pydantic schemas, and every pydantic error becomes a Diagnostic
with the user's camelCase field path and the line of that field. Only a
document without schema errors reaches the kind's semantic validator
(``pilotfish.api.validation``); a document with any error is not returned.

All errors of a document are reported, not only the first.

Documents of kinds Pilotfish does not model and need not (another project's
API group, such as Argo or cert-manager; ``kinds.is_ignored_kind``) give one
informational diagnostic and are not returned; so do Istio kinds Pilotfish
recognises but does not apply (``kinds.UNAPPLIED_ISTIO_KINDS``: EnvoyFilter and
WasmPlugin with a warning, since the user expects them to act; IstioOperator).
A text holding a template directive where YAML needs a value (a Helm chart's
``{{ ... }}``) is refused as a whole with one error at the first such line,
before it is parsed: YAML would report a confusing syntax error, or worse read
it as a mapping. A document with neither apiVersion nor kind (chart values, an
OpenAPI document) is one error saying it is no manifest.

Hostile input: everything stays within ``ParseLimits`` (``api.limits``). The
byte size is checked before the text is read or parsed, the rest while it is
composed (``api.yamlcompose``); the first limit crossed ends the file with one
error naming the limit and the line where it was crossed (documents before it
still load, as with a syntax error).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pilotfish.api.base import ObjectMeta
from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.kinds import (
    API_VERSIONS,
    DOCUMENT_KIND,
    KINDS,
    TOP_LEVEL_SPEC_FIELDS,
    is_ignored_kind,
    resolve_document_kind,
    unapplied_istio_kind,
)
from pilotfish.api.limits import DEFAULT_LIMITS, ParseLimits, file_too_large
from pilotfish.api.pydantic_errors import errors_to_findings
from pilotfish.api.resource import Resource
from pilotfish.api.validation import validate
from pilotfish.api.yamlcompose import ParseLimitError, compose_documents
from pilotfish.api.yamlnodes import NodeData, line_in, node_to_data

__all__ = ["LoadResult", "load_file", "load_text"]

_M = TypeVar("_M", bound=BaseModel)

_ENVELOPE_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
# Server-populated metadata that manifests exported from a cluster carry. It has
# no meaning here, so it is dropped instead of failing the document.
_IGNORED_METADATA = frozenset(
    {
        "managedFields",
        "ownerReferences",
        "finalizers",
        "selfLink",
        "generateName",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Resources that loaded cleanly, and every problem found (errors and warnings)."""

    resources: tuple[Resource, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no diagnostic is an error (warnings are fine)."""
        return not any(d.is_error for d in self.diagnostics)


def load_file(path: str | Path, limits: ParseLimits = DEFAULT_LIMITS) -> LoadResult:
    """Load every resource of a YAML or JSON file. Unreadable files, and files
    larger than ``limits.max_file_bytes`` (not read at all), give one error."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            data = _read_at_most(fh, limits.max_file_bytes)
        if data is None:
            return LoadResult((), (_error(name, 0, file_too_large(limits.max_file_bytes)),))
        # Newlines as text mode reads them (universal newlines), as before.
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        return LoadResult((), (_error(name, 0, f"file is not UTF-8 text: {exc.reason}"),))
    except OSError as exc:
        return LoadResult((), (_error(name, 0, f"cannot read file: {exc.strerror or exc}"),))
    return load_text(text, name, limits)


def _read_at_most(fh: BinaryIO, max_bytes: int) -> bytes | None:
    """The whole file, or None if it is (or grows while read) beyond ``max_bytes``."""
    size = os.fstat(fh.fileno()).st_size
    if size > max_bytes:
        return None
    data = fh.read(size + 1)  # one more: notices growth since the stat
    if len(data) > size:
        data += fh.read(max_bytes + 1 - len(data))
    return data if len(data) <= max_bytes else None


def load_text(text: str, filename: str, limits: ParseLimits = DEFAULT_LIMITS) -> LoadResult:
    """Load every resource of a YAML (multi-document) or JSON text.

    ``filename`` is only used to label diagnostics and ``Resource.source``.
    Documents before a syntax error or a crossed limit are still loaded; the
    result is then not ``ok``. Empty documents are skipped.
    """
    resources: list[Resource] = []
    diagnostics: list[Diagnostic] = []
    if _utf8_size(text) > limits.max_file_bytes:
        return LoadResult((), (_error(filename, 0, file_too_large(limits.max_file_bytes)),))
    template_line = _template_line(text)
    if template_line:
        message = (
            "not YAML: a template directive '{{ ... }}' (Helm or Go template); "
            "render it first (e.g. helm template)"
        )
        return LoadResult((), (_error(filename, template_line, message),))
    count = 0
    try:
        for root in compose_documents(text, limits):
            items = _items(root)
            if count + len(items) > limits.max_documents:
                first_over = items[limits.max_documents - count]
                raise ParseLimitError(
                    f"more than {limits.max_documents} resources (limit)",
                    first_over.start_mark.line + 1,
                )
            count += len(items)
            for item in items:
                doc = _Document(node_to_data(item, max_depth=limits.max_depth), _line_of(item))
                _load_document(doc, filename, resources, diagnostics)
    except ParseLimitError as exc:
        diagnostics.append(_error(filename, exc.line, exc.message))
    except RecursionError:
        # Not reachable within the limits as far as we know (merge-key chains are
        # the one recursion left in PyYAML); refusing beats a traceback.
        diagnostics.append(_error(filename, 0, "nesting too deep to read (limit)"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        reason = exc.problem or exc.context or "invalid YAML"
        diagnostics.append(_error(filename, line, f"YAML syntax error: {reason}"))
    except yaml.YAMLError as exc:
        diagnostics.append(_error(filename, 0, f"YAML syntax error: {exc}"))
    return LoadResult(tuple(resources), tuple(diagnostics))


def _template_line(text: str) -> int:
    """The 1-based line of the first ``{{`` the YAML scanner sees as two flow-mapping
    openers (so not inside a quoted or block scalar, nor a comment); 0: none."""
    if "{{" not in text:
        return 0
    previous: yaml.Token | None = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if (
                isinstance(token, yaml.FlowMappingStartToken)
                and isinstance(previous, yaml.FlowMappingStartToken)
                and token.start_mark.index == previous.end_mark.index
            ):
                return int(token.start_mark.line) + 1
            previous = token
    except yaml.YAMLError:
        pass  # the parse that follows reports it
    return 0


@dataclass(frozen=True, slots=True)
class _Document:
    data: NodeData
    line: int


def _utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8, counted without encoding it when it is all ASCII."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _items(root: yaml.Node) -> list[yaml.Node]:
    """Split a composed root into resource documents (``List`` and arrays unwrap)."""
    if isinstance(root, yaml.SequenceNode):
        return list(root.value)
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.value == "items"
                and isinstance(value_node, yaml.SequenceNode)
                and _scalar_value(root, "kind") == "List"
            ):
                return list(value_node.value)
    if isinstance(root, yaml.ScalarNode) and root.value == "" and root.tag.endswith(":null"):
        return []
    return [root]


def _line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar_value(node: yaml.MappingNode, key: str) -> str | None:
    for key_node, value_node in node.value:
        if getattr(key_node, "value", None) == key and isinstance(value_node, yaml.ScalarNode):
            return str(value_node.value)
    return None


class _DocReport:
    """Collects the diagnostics of one document, labelled with its identity."""

    def __init__(self, filename: str, doc: _Document, raw: Mapping[str, Any]) -> None:
        self.filename = filename
        self.doc = doc
        kind = raw.get("kind")
        meta = raw.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        self.kind = kind if isinstance(kind, str) else ""
        name = meta.get("name")
        namespace = meta.get("namespace", "default")
        self.name = name if isinstance(name, str) else ""
        self.namespace = namespace if isinstance(namespace, str) and self.name else ""
        self.items: list[Diagnostic] = []

    def error(self, field_path: str, message: str) -> None:
        line = line_in(self.doc.data.lines, field_path, self.doc.line)
        self.items.append(
            Diagnostic(
                severity=Severity.ERROR,
                message=message,
                source=SourceRef(self.filename, line),
                kind=self.kind,
                namespace=self.namespace,
                name=self.name,
                field=field_path,
            )
        )


def _load_document(
    doc: _Document, filename: str, resources: list[Resource], diagnostics: list[Diagnostic]
) -> None:
    raw = doc.data.value
    if raw is None:
        return
    if not isinstance(raw, dict):
        diagnostics.append(
            _error(
                filename, doc.line, "a resource must be a mapping with apiVersion, kind, metadata"
            )
        )
        return
    if "apiVersion" not in raw and "kind" not in raw:
        # One clear line instead of an "unknown field" for every key of, say, a
        # Helm chart's values or an OpenAPI document.
        diagnostics.append(
            _error(
                filename,
                doc.line,
                "not a Kubernetes manifest: the document has neither apiVersion nor kind "
                "(another tool's YAML, such as Helm values or an OpenAPI document?)",
            )
        )
        return
    api_version, kind_value = raw.get("apiVersion"), raw.get("kind")
    if (
        isinstance(api_version, str)
        and isinstance(kind_value, str)
        and is_ignored_kind(api_version, kind_value)
    ):
        diagnostics.append(_ignored(raw, filename, doc.line, api_version, kind_value))
        return
    unapplied = (
        unapplied_istio_kind(api_version, kind_value)
        if isinstance(api_version, str) and isinstance(kind_value, str)
        else None
    )
    if unapplied is not None:
        warning, reason = unapplied
        diagnostics.append(
            _ignored(raw, filename, doc.line, str(api_version), str(kind_value), reason, warning)
        )
        return
    report = _DocReport(filename, doc, raw)
    for path, line, message in doc.data.problems:
        report.items.append(
            Diagnostic(
                Severity.ERROR,
                message,
                SourceRef(filename, line),
                report.kind,
                report.namespace,
                report.name,
                path,
            )
        )
    kind = _check_envelope(raw, report)
    metadata = _validate_part(ObjectMeta, _metadata_input(raw.get("metadata")), "metadata", report)
    spec: BaseModel | None = None
    if kind is not None:
        top_level = TOP_LEVEL_SPEC_FIELDS.get(kind)
        if top_level is None:
            spec = _validate_part(KINDS[kind], raw.get("spec"), "spec", report)
        else:  # a kind without ``spec`` (Secret): its fields sit at the top level
            fields = {k: v for k, v in raw.items() if k in top_level}
            spec = _validate_part(KINDS[kind], fields, "", report)
    if report.items or kind is None or metadata is None or spec is None:
        diagnostics.extend(sorted(report.items, key=_by_line))
        return
    resource = Resource(
        api_version=str(raw["apiVersion"]),
        kind=kind,
        metadata=metadata,
        spec=spec,
        source=SourceRef(filename, doc.line),
        raw=raw,
        lines=dict(doc.data.lines),
    )
    found = validate(resource)
    diagnostics.extend(sorted(found, key=_by_line))
    if not any(d.is_error for d in found):
        resources.append(resource)


def _ignored(
    raw: Mapping[str, Any],
    filename: str,
    line: int,
    api_version: str,
    kind: str,
    reason: str = "is not a mesh kind; ignored",
    warning: bool = False,
) -> Diagnostic:
    meta = raw.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name")
    namespace = meta.get("namespace", "")
    return Diagnostic(
        Severity.WARNING if warning else Severity.INFO,
        f"{kind} ({api_version}) {reason}",
        SourceRef(filename, line),
        kind,
        namespace if isinstance(namespace, str) else "",
        name if isinstance(name, str) else "",
    )


def _check_envelope(raw: Mapping[str, Any], report: _DocReport) -> str | None:
    """Check apiVersion/kind/metadata/top-level keys; return the kind when usable."""
    allowed = _ENVELOPE_KEYS
    top_level = TOP_LEVEL_SPEC_FIELDS.get(str(raw.get("kind")))
    if top_level is not None:
        allowed = (_ENVELOPE_KEYS - {"spec"}) | top_level
    for key in raw:
        if key not in allowed:
            report.error(str(key), "unknown field")
    api_version = raw.get("apiVersion")
    kind = raw.get("kind")
    if api_version is None:
        report.error("apiVersion", "required field missing")
    elif not isinstance(api_version, str):
        report.error("apiVersion", "must be a string")
    if kind is None:
        report.error("kind", "required field missing")
        return None
    if not isinstance(kind, str):
        report.error("kind", "must be a string")
        return None
    internal = resolve_document_kind(api_version if isinstance(api_version, str) else "", kind)
    if internal is None:
        known = ", ".join(sorted(set(DOCUMENT_KIND.values())))
        report.error("kind", f"unknown kind {kind!r} (known: {known})")
        return None
    if isinstance(api_version, str) and api_version not in API_VERSIONS[internal]:
        accepted = ", ".join(
            sorted(v for k, w in DOCUMENT_KIND.items() if w == kind for v in API_VERSIONS[k])
        )
        report.error(
            "apiVersion", f"apiVersion {api_version!r} is not valid for {kind} (use {accepted})"
        )
    if "metadata" not in raw:
        report.error("metadata", "required field missing")
    spec = raw.get("spec")
    if top_level is None and spec is not None and not isinstance(spec, Mapping):
        report.error("spec", "must be a mapping")
        return None
    return internal


def _metadata_input(meta: Any) -> Any:
    if isinstance(meta, Mapping):
        return {k: v for k, v in meta.items() if k not in _IGNORED_METADATA}
    return meta


def _validate_part(model: type[_M], data: Any, prefix: str, report: _DocReport) -> _M | None:
    if data is None:
        if prefix == "metadata":
            return None  # already reported by the envelope check
        data = {}
    try:
        return model.model_validate(_drop_nulls(data))
    except ValidationError as exc:
        for path, message in errors_to_findings(exc, data, prefix):
            report.error(path, message)
        return None


def _drop_nulls(data: Any) -> Any:
    """Remove ``key: null`` entries: as in protobuf JSON, null means "not set"."""
    if isinstance(data, Mapping):
        return {k: _drop_nulls(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_drop_nulls(v) for v in data]
    return data


def _by_line(d: Diagnostic) -> int:
    return d.source.line if d.source else 0


def _error(filename: str, line: int, message: str) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, SourceRef(filename, line))
