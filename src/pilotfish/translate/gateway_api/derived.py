"""Building the Istio objects the converter derives, marked as such.

Derived objects are named after their source with the reserved suffix
``-gwapi`` (users' objects should not end in it), keep the source's
``SourceRef`` so that later diagnostics point at the user's file, and carry
annotations saying where they came from and that routes follow Gateway API
semantics (``translate/http_routes.py`` reads ``ROUTE_SEMANTICS``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import Final

from pydantic import BaseModel

from pilotfish.api.resource import Resource
from pilotfish.translate.derived_resource import DERIVED_FROM, derived_resource
from pilotfish.translate.route_semantics import ROUTE_SEMANTICS, SCOPE_NAMESPACE

__all__ = [
    "DERIVED_FROM",
    "INVALID_BACKEND_HOST",
    "ROUTE_SEMANTICS",
    "SCOPE_NAMESPACE",
    "derived",
    "safe_name",
    "unique_names",
]

#: ``gateway`` on a derived VirtualService: Gateway API route semantics apply.
#: The destination of a backendRef that cannot be used: no cluster has this
#: name (``.invalid`` is reserved, RFC 2606), so its share of requests gets 500.
INVALID_BACKEND_HOST: Final = "backend-not-found.pilotfish.invalid"
_RENAMEABLE: Final = frozenset({"VirtualService", "DestinationRule"})
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def safe_name(*parts: str) -> str:
    """A DNS-label-ish name from parts (``*.example.com`` -> ``wildcard-example-com``)."""
    joined = "-".join(p.replace("*", "wildcard") for p in parts if p)
    return _UNSAFE.sub("-", joined.lower()).strip("-")


def derived(
    kind: str,
    api_version: str,
    namespace: str,
    name: str,
    spec: BaseModel,
    sources: list[Resource],
    annotations: dict[str, str] | None = None,
) -> Resource:
    """A derived object of ``kind``, named with the reserved suffix;
    ``sources[0]`` lends it its SourceRef."""
    return derived_resource(
        kind, f"{name}-gwapi", namespace, spec, sources, annotations, api_version=api_version
    )


def unique_names(resources: list[Resource]) -> tuple[Resource, ...]:
    """``resources`` with no two sharing a key: names are sanitised (``a.b`` and
    ``a-b`` both give ``a-b``), so a later clash gets a short digest of its
    source annotation and position appended. Only kinds nothing refers to by
    name are renamed (VirtualServices, DestinationRules); a clash of derived
    Gateways or Secrets (which need ``a-b`` + ``c`` against ``a`` + ``b-c``)
    keeps the first."""
    seen: set[object] = set()
    out: list[Resource] = []
    for i, res in enumerate(resources):
        if res.key in seen and res.kind not in _RENAMEABLE:
            continue
        if res.key in seen:
            digest = hashlib.sha256(
                f"{res.metadata.annotations.get(DERIVED_FROM, '')}/{i}".encode()
            ).hexdigest()[:8]
            name = f"{res.name.removesuffix('-gwapi')}-{digest}-gwapi"
            raw = {**res.raw, "metadata": {**res.raw.get("metadata", {}), "name": name}}
            res = replace(res, metadata=res.metadata.model_copy(update={"name": name}), raw=raw)
        seen.add(res.key)
        out.append(res)
    return tuple(out)
