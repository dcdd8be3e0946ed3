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

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.gateway_api import GATEWAY_API_KINDS
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.model.ambient import WAYPOINT_CONTROLLER
from pilotfish.translate.conversion import Conversion, ConversionContext
from pilotfish.translate.converter_cache import memoized
from pilotfish.translate.gateway_api.backend_tls import convert_backend_tls
from pilotfish.translate.gateway_api.derived import unique_names
from pilotfish.translate.gateway_api.gateways import (
    convert_gateways,
    gateway_status,
    listener_findings,
)
from pilotfish.translate.gateway_api.index import (
    SERVED_CONTROLLERS,
    ConfigIndex,
    is_gateway_workload,
)
from pilotfish.translate.gateway_api.routes import RouteConversion, convert_routes
from pilotfish.translate.gateway_api.status import Condition, conditions
from pilotfish.translate.gateway_api.waypoints import waypoint_statuses

__all__ = ["convert_gateway_api"]


#: The kinds conversion reads; any other kind cannot change its result.
_INPUT_KINDS: Final = GATEWAY_API_KINDS | {"Service", "Secret", "ConfigMap", "Namespace"}


def _is_input(res: Resource) -> bool:
    if res.kind in _INPUT_KINDS:
        return True
    # Of the WorkloadEntries, only gateway workloads matter (status.addresses): other
    # pods coming and going must not cost a conversion.
    return res.kind == "WorkloadEntry" and is_gateway_workload(res)


def _convert_if_any(resources: tuple[Resource, ...], ctx: ConversionContext) -> Conversion:
    """The Gateway API objects of ``resources`` converted (its inputs already filtered)."""
    if not any(r.kind in GATEWAY_API_KINDS for r in resources):
        return Conversion()  # the common case: nothing to index
    return _convert(resources, ctx)


#: The converter registered in ``translate.derive``, cached on the resources it
#: reads (``translate.converter_cache``): when none of them changed (a change to
#: other kinds, or to ordinary pods' endpoints) the previous result is reused.
convert_gateway_api: Final = memoized(_is_input, _convert_if_any)


def _convert(resources: tuple[Resource, ...], ctx: ConversionContext) -> Conversion:
    index = ConfigIndex.build(resources, ctx.domain_suffix)
    states, istio_gateways = convert_gateways(resources, index)
    routes: RouteConversion = convert_routes(resources, states, index)
    tls_rules, tls_statuses, tls_diagnostics = convert_backend_tls(resources, index)
    statuses: dict[ResourceKey, Mapping[str, Any]] = dict(routes.statuses)
    statuses.update(tls_statuses)
    diagnostics: list[Diagnostic] = [*routes.diagnostics, *tls_diagnostics]
    for state in states:
        statuses[state.resource.key] = gateway_status(state, index)
        diagnostics.extend(listener_findings(state))
    statuses.update(waypoint_statuses(resources, index))
    statuses.update(_class_statuses(resources, index))
    return Conversion(
        resources=unique_names([*istio_gateways, *routes.resources, *tls_rules]),
        statuses=MappingProxyType(statuses),
        diagnostics=tuple(diagnostics),
    )


def _class_statuses(
    resources: tuple[Resource, ...], index: ConfigIndex
) -> dict[ResourceKey, Mapping[str, Any]]:
    out: dict[ResourceKey, Mapping[str, Any]] = {}
    for res in resources:
        if res.kind != "GatewayClass":
            continue
        controller = index.controller_of(res.name)
        if controller in SERVED_CONTROLLERS or controller == WAYPOINT_CONTROLLER:
            accepted = Condition(
                "Accepted", True, "Accepted", f"served by Pilotfish ({controller})"
            )
            out[res.key] = {"conditions": conditions(res, [accepted])}
    return out
