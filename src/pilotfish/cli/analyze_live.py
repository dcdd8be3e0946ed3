"""The live mesh's configuration for ``pilotfish analyze`` given no files.

Every kind the control plane serves is listed through the config API (one
``GET /apis/<group>/<version>/<plural>`` per kind, all namespaces, as ``pilotfish
get -A`` reads them) and loaded with the same loader as files, so the same
analyzers run over it. Objects come back as their authors wrote them; the
server's ``status`` and ``resourceVersion`` are dropped. Secrets come back
redacted, so only their names, types and keys are kept: analyzers need to
know a Secret exists, never its values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pilotfish.api.analysis.output import LIVE_SOURCE
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.kinds import KINDS
from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.cli.client import ControlPlaneApi, get_json
from pilotfish.cli.resources import api_path, preferred_api_version

__all__ = ["live_resources"]


def _clean(item: Mapping[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in item.items() if k != "status"}
    meta = dict(doc.get("metadata") or {})
    meta.pop("resourceVersion", None)
    doc["metadata"] = meta
    if doc.get("kind") == "Secret" and doc.get("apiVersion") == "v1":
        doc.pop("data", None)
        doc.pop("stringData", None)
    return doc


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
            loaded = load_text(json.dumps(_clean(item)), LIVE_SOURCE)
            resources += loaded.resources
            problems += loaded.diagnostics
    return resources, problems
