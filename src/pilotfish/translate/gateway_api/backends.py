"""backendRefs -> Istio destinations, and the ResolvedRefs condition they earn.

A backendRef is usable when it names a core Service (``group: ""``,
``kind: Service``) that exists, in the route's namespace or in one whose
ReferenceGrant allows the route's kind. A mesh route (every parentRef a
Service) needs no ReferenceGrant: it only augments Services its clients can
already reach (GEP-1294; upstream's MeshConsumerRoute routes a consumer
namespace's calls to the producer's Service). An unusable one keeps its weight but
points at ``INVALID_BACKEND_HOST``, for which no cluster exists: the route
answers 500 for that share of requests, as the spec requires. The first
problem found sets the route's ResolvedRefs reason (``InvalidKind``,
``RefNotPermitted``, ``BackendNotFound``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pilotfish.api.gateway_api.common import BackendObjectReference
from pilotfish.api.networking.common import Destination, PortSelector
from pilotfish.api.resource import Resource
from pilotfish.translate.gateway_api.derived import INVALID_BACKEND_HOST
from pilotfish.translate.gateway_api.index import ConfigIndex

__all__ = ["BackendProblem", "resolve_backend"]


@dataclass(frozen=True, slots=True)
class BackendProblem:
    reason: str
    message: str
    field: str


def _mesh_only(route: Resource) -> bool:
    refs = getattr(route.spec, "parent_refs", None) or []
    return bool(refs) and all(r.kind == "Service" and r.group in ("", "core") for r in refs)


def resolve_backend(
    ref: BackendObjectReference, route: Resource, index: ConfigIndex, field: str
) -> tuple[Destination, BackendProblem | None]:
    """The destination of ``ref`` (the invalid host when unusable) and its problem."""
    ns = ref.namespace or route.namespace
    port = PortSelector(number=ref.port) if ref.port else None
    invalid = Destination(host=INVALID_BACKEND_HOST, port=port)
    if ref.group != "" or ref.kind != "Service":
        group = ref.group or "core"
        return invalid, BackendProblem(
            "InvalidKind",
            f"backendRef {group}/{ref.kind} {ref.name}: only Services are supported",
            field,
        )
    allowed = _mesh_only(route) or index.reference_allowed(
        route.kind, route.namespace, "", "Service", ns, ref.name
    )
    if not allowed:
        return invalid, BackendProblem(
            "RefNotPermitted",
            f"backendRef Service {ns}/{ref.name}: no ReferenceGrant in {ns} allows "
            f"{route.kind}s from {route.namespace}",
            field,
        )
    if not index.has_service(ns, ref.name):
        return invalid, BackendProblem(
            "BackendNotFound", f"Service {ns}/{ref.name} not found", field
        )
    return Destination(host=index.service_host(ns, ref.name), port=port), None
