"""IST0171 NegativeConditionStatus (Istio's ``conditions/conditions.go``).

A resource whose written ``status`` holds a condition in its negative state:
what a controller said about it when the manifest was exported from a cluster
(``kubectl get -o yaml``), and what ``istioctl analyze`` reports from files.
Only the conditions Istio looks at count, by kind (others, such as an Argo
CD ``Synced``, are someone else's business):

- Service, ServiceEntry, WorkloadEntry: ``istio.io/WaypointBound`` False;
- AuthorizationPolicy: ``ZtunnelAccepted`` or ``WaypointAccepted`` False, and
  ``WaypointAccepted`` True with reason ``PartiallyInvalid``;
- Kubernetes Gateway: ``Accepted``, ``Programmed`` or ``ResolvedRefs`` False;
- HTTPRoute, GRPCRoute: the same, in any ``status.parents[].conditions``.

``analyze`` of the live mesh reads objects without their status (the
conditions there are Pilotfish's own, which its converters report as
findings of their own), so this concerns files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.diagnostics import Diagnostic

__all__ = ["CODES", "check_conditions"]

CODES = ("IST0171",)

_WAYPOINT = frozenset({"istio.io/WaypointBound"})
_GATEWAY_API = frozenset({"Accepted", "Programmed", "ResolvedRefs"})

#: Kind -> the condition types whose ``False`` status is negative.
_NEGATIVE: Mapping[str, frozenset[str]] = {
    "Service": _WAYPOINT,
    "ServiceEntry": _WAYPOINT,
    "WorkloadEntry": _WAYPOINT,
    "AuthorizationPolicy": frozenset({"ZtunnelAccepted", "WaypointAccepted"}),
    "KubernetesGateway": _GATEWAY_API,
    "HTTPRoute": _GATEWAY_API,
    "GRPCRoute": _GATEWAY_API,
}
_ROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute"})


def _conditions(kind: str, status: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(field path, condition) of every condition of ``status``."""
    if kind in _ROUTE_KINDS:
        parents = status.get("parents")
        for p, parent in enumerate(parents if isinstance(parents, list) else ()):
            listed = parent.get("conditions") if isinstance(parent, Mapping) else None
            for i, c in enumerate(listed if isinstance(listed, list) else ()):
                if isinstance(c, Mapping):
                    yield f"status.parents[{p}].conditions[{i}]", c
        return
    listed = status.get("conditions")
    for i, c in enumerate(listed if isinstance(listed, list) else ()):
        if isinstance(c, Mapping):
            yield f"status.conditions[{i}]", c


def _negative(kind: str, condition: Mapping[str, Any]) -> bool:
    ctype, state = str(condition.get("type", "")), str(condition.get("status", ""))
    if state == "False" and ctype in _NEGATIVE[kind]:
        return True
    # Accepted by the waypoint, but with targetRefs it could not resolve.
    return (
        kind == "AuthorizationPolicy"
        and ctype == "WaypointAccepted"
        and condition.get("reason") == "PartiallyInvalid"
    )


def check_conditions(ctx: AnalysisContext) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for r in ctx.resources:
        status = r.raw.get("status")
        if r.kind not in _NEGATIVE or not isinstance(status, Mapping):
            continue
        for path, c in _conditions(r.kind, status):
            if _negative(r.kind, c):
                found.append(
                    report(
                        r,
                        path,
                        "IST0171",
                        f"condition {c.get('type')} is {c.get('status')} "
                        f"(reason {c.get('reason', '')!s}): {c.get('message', '')!s}",
                    )
                )
    return found
