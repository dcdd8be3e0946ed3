"""Building the Istio objects the converter derives, marked as such.

Derived objects are named after their source with the reserved suffix
``-gwapi`` (users' objects should not end in it), keep the source's
``SourceRef`` so that later diagnostics point at the user's file, and carry
annotations saying where they came from and that routes follow Gateway API
semantics (``translate/http_routes.py`` reads ``ROUTE_SEMANTICS``).
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import BaseModel

from pilotfish.api.base import ObjectMeta
from pilotfish.api.resource import Resource
from pilotfish.translate.route_semantics import ROUTE_SEMANTICS, SCOPE_NAMESPACE

__all__ = [
    "DERIVED_FROM",
    "INVALID_BACKEND_HOST",
    "ROUTE_SEMANTICS",
    "SCOPE_NAMESPACE",
    "derived",
    "safe_name",
]

DERIVED_FROM: Final = "internal.pilotfish.io/derived-from"
#: ``gateway`` on a derived VirtualService: Gateway API route semantics apply.
#: The destination of a backendRef that cannot be used: no cluster has this
#: name (``.invalid`` is reserved, RFC 2606), so its share of requests gets 500.
INVALID_BACKEND_HOST: Final = "backend-not-found.pilotfish.invalid"
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
    """A derived object of ``kind``; ``sources[0]`` lends it its SourceRef."""
    notes = {DERIVED_FROM: ", ".join(f"{s.kind} {s.namespace}/{s.name}" for s in sources)}
    notes.update(annotations or {})
    meta = ObjectMeta(name=f"{name}-gwapi", namespace=namespace, annotations=notes)
    return Resource(api_version, kind, meta, spec, sources[0].source if sources else None)
