"""``metadata.generation`` as the Kubernetes API server keeps it.

A written object's generation is the server's, not the writer's: 1 when it is
created, the stored one plus 1 when its ``spec`` changes, and the stored one
when only metadata changes (labels, annotations) or nothing does. Status
conditions carry it as ``observedGeneration``, which is how a client knows
that a status describes its latest edit (upstream's Gateway API conformance
test HTTPRouteObservedGenerationBump checks exactly that). An object loaded
from a file without one counts as generation 1. Like Kubernetes, the core
group's kinds (``v1``: Service, Secret, ConfigMap...) get none.
"""

from __future__ import annotations

from dataclasses import replace

from pilotfish.api.kinds import api_group
from pilotfish.api.resource import Resource

__all__ = ["with_generation"]


def with_generation(resource: Resource, current: Resource | None) -> Resource:
    """``resource`` carrying the generation it gets when it replaces ``current``."""
    if not api_group(resource.api_version):
        return resource
    if current is None:
        generation = 1
    else:
        stored = current.metadata.generation or 1
        generation = stored if current.spec == resource.spec else stored + 1
    if resource.metadata.generation == generation:
        return resource
    metadata = resource.metadata.model_copy(update={"generation": generation})
    raw = dict(resource.raw)
    if raw:  # ``get -o yaml`` shows the document as written, with the server's generation
        raw_meta = dict(raw.get("metadata") or {})
        raw_meta["generation"] = generation
        raw["metadata"] = raw_meta
    return replace(resource, metadata=metadata, raw=raw)
