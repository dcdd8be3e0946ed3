"""TCPRoute and TLSRoute rules -> VirtualService ``tcp`` / ``tls`` rules.

Weighted backends as for HTTP; an unusable backend keeps its share but points
at a host no cluster serves, so those connections are refused. A TLSRoute
matches the SNI names it serves (its hostnames, or every name).
"""

from __future__ import annotations

from typing import Any

from pilotfish.api.networking.virtual_service import (
    RouteDestination,
    TCPRoute,
    TLSMatchAttributes,
    TLSRoute,
)
from pilotfish.api.resource import Resource
from pilotfish.translate.gateway_api.backends import BackendProblem, resolve_backend
from pilotfish.translate.gateway_api.index import ConfigIndex

__all__ = ["l4_rules"]


def l4_rules(
    route: Resource, spec: Any, index: ConfigIndex
) -> tuple[list[TCPRoute] | list[TLSRoute], list[BackendProblem]]:
    problems: list[BackendProblem] = []
    tcp: list[TCPRoute] = []
    tls: list[TLSRoute] = []
    for ri, rule in enumerate(spec.rules):
        destinations: list[RouteDestination] = []
        for bi, ref in enumerate(rule.backend_refs):
            dest, problem = resolve_backend(
                ref, route, index, f"spec.rules[{ri}].backendRefs[{bi}]"
            )
            if problem is not None:
                problems.append(problem)
            if ref.weight > 0:
                destinations.append(RouteDestination(destination=dest, weight=ref.weight))
        if not destinations:
            continue
        if route.kind == "TCPRoute":
            tcp.append(TCPRoute(route=destinations))
        else:
            sni = list(spec.hostnames) or ["*"]
            tls.append(TLSRoute(match=[TLSMatchAttributes(sni_hosts=sni)], route=destinations))
    return (tcp if route.kind == "TCPRoute" else tls), problems
