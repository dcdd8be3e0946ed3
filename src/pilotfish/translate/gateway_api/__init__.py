"""The Gateway API converter: Gateways and routes -> Istio Gateways and VirtualServices.

Theory of operation (after Istio's ``pilot/pkg/config/kube/gateway``):

1. ``gateways``: each Gateway of a served class becomes one Istio Gateway per
   usable listener; listener conditions are computed.
2. ``attachment``: each route's parentRefs are resolved to listeners
   (sectionName, port, allowedRoutes, hostname intersection); every accepting
   listener counts the route.
3. ``http`` / ``grpc`` / ``l4``: each route's rules become VirtualService
   rules. HTTP rules of all routes bound to one listener and hostname are
   sorted by the spec's precedence and emitted as one VirtualService in the
   Gateway's namespace, bound to that listener's Istio Gateway.
4. ``mesh``: routes whose parentRef is a Service (GAMMA) become mesh
   VirtualServices for that Service's host.
5. ``backend_tls``: BackendTLSPolicies become DestinationRules.
6. Status of every served object and ``analyze`` diagnostics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.translate.conversion import Conversion, ConversionContext
from pilotfish.translate.gateway_api.backend_tls import convert_backend_tls
from pilotfish.translate.gateway_api.gateways import convert_gateways, gateway_status
from pilotfish.translate.gateway_api.index import ConfigIndex
from pilotfish.translate.gateway_api.routes import RouteConversion, convert_routes

__all__ = ["convert_gateway_api"]


def convert_gateway_api(resources: tuple[Resource, ...], ctx: ConversionContext) -> Conversion:
    """The converter registered in ``translate.derive``."""
    index = ConfigIndex.build(resources, ctx.domain_suffix)
    states, istio_gateways = convert_gateways(resources, index)
    routes: RouteConversion = convert_routes(resources, states, index)
    tls_rules, tls_statuses, tls_diagnostics = convert_backend_tls(resources, index)
    statuses: dict[ResourceKey, Mapping[str, Any]] = dict(routes.statuses)
    statuses.update(tls_statuses)
    for state in states:
        statuses[state.resource.key] = gateway_status(state, index)
    for name, controller in _class_statuses(resources, index).items():
        statuses[name] = controller
    diagnostics: list[Diagnostic] = [*routes.diagnostics, *tls_diagnostics]
    return Conversion(
        resources=(*istio_gateways, *routes.resources, *tls_rules),
        statuses=MappingProxyType(statuses),
        diagnostics=tuple(diagnostics),
    )


def _class_statuses(
    resources: tuple[Resource, ...], index: ConfigIndex
) -> dict[ResourceKey, Mapping[str, Any]]:
    from pilotfish.translate.gateway_api.index import SERVED_CONTROLLERS
    from pilotfish.translate.gateway_api.status import Condition, conditions

    out: dict[ResourceKey, Mapping[str, Any]] = defaultdict(dict)
    for res in resources:
        if res.kind != "GatewayClass":
            continue
        controller = index.controller_of(res.name)
        if controller in SERVED_CONTROLLERS:
            accepted = Condition(
                "Accepted", True, "Accepted", f"served by Pilotfish ({controller})"
            )
            out[res.key] = {"conditions": conditions(res, [accepted])}
    return dict(out)
