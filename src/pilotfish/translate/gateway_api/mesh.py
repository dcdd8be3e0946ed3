"""Mesh (GAMMA) routes: an HTTPRoute or GRPCRoute whose parent is a Service.

Theory of operation (the GAMMA spec, as Istio implements it): the route's
rules apply to requests *for that Service* made by sidecars.

- A *producer* route lives in the Service's namespace and applies to every
  client: its VirtualService is exported everywhere (``exportTo: ["*"]``).
- A *consumer* route lives in another namespace and applies only to clients
  in that namespace (``exportTo: ["."]``), overriding a producer route there.

All routes of one namespace for one Service are merged into one
VirtualService (``hosts: [<service FQDN>]``, ``gateways: [mesh]``) with the
rules in the spec's precedence order; a parentRef ``port`` restricts the rules
to that Service port. When a VirtualService and a mesh route both name a host,
``translate.virtual_hosts.vs_for_mesh`` gives the client's own namespace's
Gateway API route precedence (Istio's "consumer override"); otherwise the
first VirtualService by namespace/name wins, as for two VirtualServices.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pilotfish.api.gateway_api.common import ParentReference
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.api.resource import Resource
from pilotfish.translate.gateway_api.attachment import ParentResult
from pilotfish.translate.gateway_api.derived import ROUTE_SEMANTICS, derived, safe_name
from pilotfish.translate.gateway_api.http import RuleEntry
from pilotfish.translate.gateway_api.index import ConfigIndex

__all__ = ["MeshRoutes", "attach_mesh"]

_MESH_KINDS = ("HTTPRoute", "GRPCRoute")


@dataclass
class MeshRoutes:
    """Rules per (route namespace, Service namespace, Service name)."""

    rules: dict[tuple[str, str, str], list[tuple[RuleEntry, Resource]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    domain_suffix: str = "cluster.local"

    def virtual_services(self) -> list[Resource]:
        out = []
        for (route_ns, svc_ns, svc), items in sorted(self.rules.items()):
            ordered = sorted(items, key=lambda item: item[0].key)
            sources = list({r.key: r for _, r in ordered}.values())
            spec = VirtualServiceSpec(
                hosts=[f"{svc}.{svc_ns}.svc.{self.domain_suffix}"],
                gateways=["mesh"],
                http=[e.rule for e, _ in ordered],
                export_to=["*"] if route_ns == svc_ns else ["."],
            )
            name = safe_name(svc, svc_ns, "mesh")
            out.append(
                derived(
                    "VirtualService",
                    "networking.istio.io/v1",
                    route_ns,
                    name,
                    spec,
                    sources,
                    {ROUTE_SEMANTICS: "gateway"},
                )
            )
        return out


def _with_port(entry: RuleEntry, port: int | None) -> RuleEntry:
    if port is None:
        return entry
    matches = [m.model_copy(update={"port": port}) for m in entry.rule.match]
    return RuleEntry(entry.key, entry.rule.model_copy(update={"match": matches}))


def attach_mesh(
    ref: ParentReference,
    route: Resource,
    entries: list[RuleEntry],
    index: ConfigIndex,
    mesh: MeshRoutes,
) -> ParentResult:
    ns = ref.namespace or route.namespace
    result = ParentResult(ref, index.default_controller)
    mesh.domain_suffix = index.domain_suffix
    if route.kind not in _MESH_KINDS:
        result.refusal = "InvalidKind"
        result.message = f"a {route.kind} cannot have a Service parent"
        return result
    if not index.has_service(ns, ref.name):
        result.refusal = "NoMatchingParent"
        result.message = f"Service {ns}/{ref.name} not found"
        return result
    # A consumer route needs no ReferenceGrant (GAMMA): it affects only its own namespace.
    key = (route.namespace, ns, ref.name)
    mesh.rules[key].extend((_with_port(e, ref.port), route) for e in entries)
    return result
