"""Put on each HTTP connection manager the per-route filters its routes need.

Theory of operation: fault injection and CORS are configured per route
(``ir.Route.fault`` / ``ir.Route.cors``, built into Envoy's
``typed_per_filter_config``), but Envoy applies them only when the connection
manager runs the matching filter. Like Istio, Pilotfish puts the filters on
the outbound and gateway connection managers; unlike Istio it adds them only
to connection managers whose route configuration has a route that uses them,
so configuration without faults or CORS stays exactly as before. Which
filters exist, when each is needed and their order is the HTTP filter
registry's business (``pilotfish.xds.build.http_filters``); this module only
finds the routes each connection manager serves (by RDS name, or inline).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pilotfish.ir import FilterChain, HttpConnectionManager, Listener, Route, RouteConfig
from pilotfish.xds.build.http_filters import with_http_filters

__all__ = ["with_route_filters"]


def _routes(config: RouteConfig) -> tuple[Route, ...]:
    return tuple(r for vh in config.virtual_hosts for r in vh.routes)


def _chain(chain: FilterChain, served: dict[str, tuple[Route, ...]]) -> FilterChain:
    hcm = chain.filter
    if not isinstance(hcm, HttpConnectionManager):
        return chain
    routes = served.get(hcm.route_config_name, ())
    if hcm.inline_routes is not None:
        routes = _routes(hcm.inline_routes)
    updated = with_http_filters(hcm, routes)
    return chain if updated is hcm else replace(chain, filter=updated)


def with_route_filters(
    listeners: Iterable[Listener], route_configs: Iterable[RouteConfig]
) -> tuple[Listener, ...]:
    """``listeners`` with the filters added to every HTTP connection manager that
    its routes (from ``route_configs`` by name, or inline) need."""
    served = {rc.name: _routes(rc) for rc in route_configs}
    out: list[Listener] = []
    for listener in listeners:
        chains = tuple(_chain(c, served) for c in listener.filter_chains)
        default = (
            _chain(listener.default_chain, served) if listener.default_chain is not None else None
        )
        if chains == listener.filter_chains and default == listener.default_chain:
            out.append(listener)
        else:
            out.append(replace(listener, filter_chains=chains, default_chain=default))
    return tuple(out)
