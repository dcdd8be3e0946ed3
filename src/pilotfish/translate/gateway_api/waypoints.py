"""Status of waypoint Gateways (class ``istio-waypoint``), as Istio writes it.

A waypoint is no ingress: its Gateway derives no Istio Gateway and takes no
routes (the services that use it are named by labels,
``translate.ambient.waypoints``). What its users look at is whether it is
deployed: ``Accepted``, ``Programmed`` once the runtime registered its workload
(its address in ``status.addresses``), and per listener whether it is the HBONE
listener a waypoint has (port 15008, protocol ``HBONE``).
"""

from __future__ import annotations

from typing import Any

from pilotfish.api.gateway_api.gateway import GatewaySpec
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.model.ambient import HBONE_PORT, WAYPOINT_CLASS, WAYPOINT_CONTROLLER
from pilotfish.translate.gateway_api.gateways import gateway_addresses, programmed_condition
from pilotfish.translate.gateway_api.index import ConfigIndex
from pilotfish.translate.gateway_api.status import Condition, conditions

__all__ = ["is_waypoint", "waypoint_statuses"]


def is_waypoint(gw: Resource, index: ConfigIndex) -> bool:
    """Whether Gateway ``gw`` is a waypoint: of the built-in class, or of a
    GatewayClass naming Istio's mesh controller."""
    assert isinstance(gw.spec, GatewaySpec)
    class_name = gw.spec.gateway_class_name
    controller = index.controller_of(class_name)
    return controller == WAYPOINT_CONTROLLER or (
        controller is None and class_name == WAYPOINT_CLASS
    )


def _listener(gw: Resource, listener: Any) -> dict[str, Any]:
    if listener.protocol == "HBONE" and listener.port == HBONE_PORT:
        found = [Condition(t, True, t) for t in ("Accepted", "Programmed", "ResolvedRefs")]
    else:
        reason = f"a waypoint listens with protocol HBONE on port {HBONE_PORT}"
        found = [
            Condition("Accepted", False, "UnsupportedProtocol", reason),
            Condition("Programmed", False, "Invalid", reason),
            Condition("ResolvedRefs", True, "ResolvedRefs"),
        ]
    return {
        "name": listener.name,
        "supportedKinds": [],
        "attachedRoutes": 0,
        "conditions": conditions(gw, found),
    }


def waypoint_statuses(
    resources: tuple[Resource, ...], index: ConfigIndex
) -> dict[ResourceKey, dict[str, Any]]:
    """The status of every waypoint Gateway among ``resources``."""
    out: dict[ResourceKey, dict[str, Any]] = {}
    for gw in resources:
        if gw.kind != "KubernetesGateway" or not is_waypoint(gw, index):
            continue
        assert isinstance(gw.spec, GatewaySpec)
        addresses = gateway_addresses(index, gw.namespace, gw.name)
        programmed = programmed_condition(
            addresses, gw.namespace, gw.name, " (waypoints are deployed in transparent mode)"
        )
        accepted = Condition("Accepted", True, "Accepted", "a waypoint, deployed by Pilotfish")
        out[gw.key] = {
            "addresses": addresses,
            "conditions": conditions(gw, [accepted, programmed]),
            "listeners": [_listener(gw, ls) for ls in gw.spec.listeners],
        }
    return out
