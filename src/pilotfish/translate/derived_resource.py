"""Building the Istio objects converters derive (``translate/derive.py``).

A derived object carries its source's ``SourceRef`` (so a diagnostic found
downstream still points at the user's file), an annotation naming the source
objects, and a ``raw`` document like a loaded one's, so ``get`` and the config
API render it as they render the users' objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from pilotfish.api.base import ObjectMeta
from pilotfish.api.resource import Resource

__all__ = ["DERIVED_FROM", "derived_resource"]

#: Annotation naming the objects a derived object was made from ("Ingress ns/name").
DERIVED_FROM = "internal.pilotfish.io/derived-from"

_API_VERSIONS = {
    "Gateway": "networking.istio.io/v1",
    "VirtualService": "networking.istio.io/v1",
    "DestinationRule": "networking.istio.io/v1",
    "AuthorizationPolicy": "security.istio.io/v1",
}


def derived_resource(
    kind: str,
    name: str,
    namespace: str,
    spec: BaseModel,
    sources: Sequence[Resource],
    annotations: Mapping[str, str] | None = None,
    api_version: str | None = None,
) -> Resource:
    """An Istio ``kind`` object made from ``sources`` (the first gives its SourceRef),
    with ``annotations`` beside the one naming its sources; ``api_version`` for a
    kind outside the Istio kinds converters usually derive (a Secret)."""
    derived_from = ", ".join(f"{s.kind} {s.namespace}/{s.name}" for s in sources)
    notes = {DERIVED_FROM: derived_from, **(annotations or {})}
    metadata = ObjectMeta(name=name, namespace=namespace, annotations=notes)
    api_version = api_version or _API_VERSIONS[kind]
    meta = {**metadata.model_dump(by_alias=True, exclude_defaults=True), "namespace": namespace}
    raw = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": meta,
        "spec": spec.model_dump(by_alias=True, exclude_defaults=True),
    }
    return Resource(
        api_version=api_version,
        kind=kind,
        metadata=metadata,
        spec=spec,
        source=sources[0].source if sources else None,
        raw=raw,
    )
