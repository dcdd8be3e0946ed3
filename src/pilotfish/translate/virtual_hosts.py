"""Which VirtualServices apply to which hosts, and the domains of a virtual host."""

from __future__ import annotations

from collections.abc import Iterable

from pilotfish.api.resource import Resource
from pilotfish.model.hosts import fqdn, short_names
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import MeshService
from pilotfish.translate.route_semantics import gateway_semantics
from pilotfish.translate.visibility import resource_visible

__all__ = ["bound_gateways", "dedupe_domains", "host_matches", "service_domains", "vs_for_mesh"]


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: exact, ``*``, or ``*.suffix`` covering ``x.suffix``."""
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return False


def bound_gateways(vs: Resource) -> frozenset[str]:
    """Gateways a VirtualService applies to, as ``ns/name`` or ``mesh``."""
    names: Iterable[str] = getattr(vs.spec, "gateways", ()) or ("mesh",)
    return frozenset(g if g == "mesh" or "/" in g else f"{vs.namespace}/{g}" for g in names)


def vs_for_mesh(snapshot: Snapshot, client_namespace: str | None = None) -> dict[str, Resource]:
    """For each service hostname, the VirtualService that routes it inside the mesh.

    When several VirtualServices name one host, the first by namespace/name wins
    (the others are reported by analysis, as conflicting), except that a
    Gateway API route of the client's own namespace comes first (GAMMA's
    consumer override, as Istio orders them). With
    ``client_namespace``, only VirtualServices exported to it count (``exportTo``).
    """
    found: dict[str, Resource] = {}
    services = snapshot.registry.services
    for vs in _consumer_routes_first(snapshot.of_kind("VirtualService"), client_namespace):
        if "mesh" not in bound_gateways(vs):
            continue
        if client_namespace is not None and not resource_visible(vs, client_namespace):
            continue
        for host in getattr(vs.spec, "hosts", ()):
            pattern = fqdn(host, vs.namespace, snapshot.domain_suffix)
            if pattern in services:
                found.setdefault(pattern, vs)
                continue
            if "*" in pattern:
                for hostname in services:
                    if host_matches(pattern, hostname):
                        found.setdefault(hostname, vs)
    return found


def _consumer_routes_first(
    found: Iterable[Resource], client_namespace: str | None
) -> list[Resource]:
    items = list(found)
    if client_namespace is None:
        return items
    # A stable sort: everything else keeps its namespace/name order.
    return sorted(
        items, key=lambda vs: not (vs.namespace == client_namespace and gateway_semantics(vs))
    )


def service_domains(
    svc: MeshService, port: int, client_namespace: str, suffix: str, *, with_bare: bool = True
) -> tuple[str, ...]:
    """Host header values that name ``svc`` on ``port`` for a client in ``client_namespace``.

    ``with_bare=False`` leaves out the forms without ``:port`` (for the explicit
    HTTP proxy route, which serves every port in one table), except on port 80.
    """
    names = list(short_names(svc.hostname, client_namespace, suffix)) + list(svc.addresses)
    out: list[str] = []
    for name in names:
        if with_bare or port == 80:
            out.append(name)
        out.append(f"{name}:{port}")
    return tuple(out)


def dedupe_domains(domains: Iterable[str], taken: set[str]) -> tuple[str, ...]:
    """Drop domains an earlier virtual host already claimed (Envoy rejects duplicates)."""
    out = []
    for d in domains:
        if d not in taken:
            taken.add(d)
            out.append(d)
    return tuple(out)
