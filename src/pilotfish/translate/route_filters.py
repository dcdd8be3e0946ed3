"""HTTP filters that routes need on their connection manager (fault, CORS).

Theory of operation: fault injection and CORS are configured per route
(``ir.Route.fault`` / ``ir.Route.cors``, built into Envoy's
``typed_per_filter_config``), but Envoy applies them only when the connection
manager runs the matching filter. Like Istio, Pilotfish puts the filters on
the outbound and gateway connection managers, in Istio's order (``fault``
then ``cors``, after any security filters); unlike Istio it adds them only to
connection managers whose route configuration has a route that uses them, so
configuration without faults or CORS stays exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pilotfish.ir import FilterChain, HttpConnectionManager, Listener, RouteConfig

__all__ = ["CORS", "FAULT", "route_filters_needed", "with_route_filters"]

FAULT = "fault"
CORS = "cors"


def route_filters_needed(config: RouteConfig) -> tuple[str, ...]:
    """The per-route HTTP filters ``config`` uses, in filter order."""
    routes = [r for vh in config.virtual_hosts for r in vh.routes]
    out: list[str] = []
    if any(r.fault is not None for r in routes):
        out.append(FAULT)
    if any(r.cors is not None for r in routes):
        out.append(CORS)
    return tuple(out)


def _chain(chain: FilterChain, needs: dict[str, tuple[str, ...]]) -> FilterChain:
    hcm = chain.filter
    if not isinstance(hcm, HttpConnectionManager):
        return chain
    names = needs.get(hcm.route_config_name, ())
    if hcm.inline_routes is not None:
        names = route_filters_needed(hcm.inline_routes)
    extra = tuple(n for n in names if n not in hcm.http_filters)
    if not extra:
        return chain
    return replace(chain, filter=replace(hcm, http_filters=(*hcm.http_filters, *extra)))


def with_route_filters(
    listeners: Iterable[Listener], route_configs: Iterable[RouteConfig]
) -> tuple[Listener, ...]:
    """``listeners`` with the fault/CORS filters added to every HTTP connection
    manager whose routes (from ``route_configs`` by name, or inline) need them."""
    needs = {rc.name: route_filters_needed(rc) for rc in route_configs}
    out: list[Listener] = []
    for listener in listeners:
        chains = tuple(_chain(c, needs) for c in listener.filter_chains)
        default = (
            _chain(listener.default_chain, needs) if listener.default_chain is not None else None
        )
        if chains == listener.filter_chains and default == listener.default_chain:
            out.append(listener)
        else:
            out.append(replace(listener, filter_chains=chains, default_chain=default))
    return tuple(out)
