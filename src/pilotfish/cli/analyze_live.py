"""The live mesh's configuration for ``pilotfish analyze`` given no files.

Every kind the control plane serves is listed through the config API (one
``GET /apis/<group>/<version>/<plural>`` per kind, all namespaces, as ``pilotfish
get -A`` reads them) and loaded with the same loader as files, so the same
analyzers run over it. Objects come back as their authors wrote them; the
server's ``status`` and ``resourceVersion`` are dropped. Secrets come back
redacted; they are loaded with their names, types and key names and every
value empty (``_load_secret``): analyzers need to know a Secret exists and
which keys it has, never its values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pilotfish.api.analysis.output import LIVE_SOURCE
from pilotfish.api.core.secret import SECRET_TYPE_OPAQUE, SecretSpec
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.kinds import KINDS
from pilotfish.api.loader import LoadResult, load_text
from pilotfish.api.resource import Resource
from pilotfish.cli.client import ControlPlaneApi, get_json
from pilotfish.cli.resources import api_path, preferred_api_version

__all__ = ["live_resources"]


def _clean(item: Mapping[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in item.items() if k != "status"}
    meta = dict(doc.get("metadata") or {})
    meta.pop("resourceVersion", None)
    doc["metadata"] = meta
    return doc


def _is_secret(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == "Secret" and doc.get("apiVersion") == "v1"


def _load_secret(doc: dict[str, Any]) -> LoadResult:
    """A live Secret with its key names and type, every value empty.

    The server sends ``<redacted>`` for values, which the loader refuses, and a
    ``kubernetes.io/tls`` Secret without its certificate would fail the TLS
    checks and go missing (a false IST0101 on the Gateway naming it). So the
    keys are loaded with empty values as a generic Secret, then given their
    type back: analyzers see which keys exist, never a value.
    """
    for part in ("data", "stringData"):
        values = doc.get(part)
        if isinstance(values, Mapping):
            doc[part] = dict.fromkeys((str(k) for k in values), "")
    kind_of_secret = doc.get("type")
    loaded = load_text(json.dumps({**doc, "type": SECRET_TYPE_OPAQUE}), LIVE_SOURCE)
    if not isinstance(kind_of_secret, str):
        return loaded
    typed = tuple(
        replace(
            r,
            spec=r.spec.model_copy(update={"type": kind_of_secret}),
            raw={**r.raw, "type": kind_of_secret},
        )
        if isinstance(r.spec, SecretSpec)
        else r
        for r in loaded.resources
    )
    return LoadResult(typed, loaded.diagnostics)


def live_resources(api: ControlPlaneApi) -> tuple[list[Resource], list[Diagnostic]]:
    """Every object the control plane holds, loaded; problems loading them (there
    should be none: the server validated them) are returned as diagnostics."""
    resources: list[Resource] = []
    problems: list[Diagnostic] = []
    for kind in sorted(KINDS):
        listing = get_json(api, api_path(kind, preferred_api_version(kind), None))
        items = listing.get("items") if isinstance(listing, Mapping) else None
        for item in items or ():
            if not isinstance(item, Mapping):
                continue
            doc = _clean(item)
            loaded = (
                _load_secret(doc) if _is_secret(doc) else load_text(json.dumps(doc), LIVE_SOURCE)
            )
            resources += loaded.resources
            problems += loaded.diagnostics
    return resources, problems
