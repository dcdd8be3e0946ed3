"""``pilotfish get`` table columns for the Gateway API kinds, as kubectl prints them.

kubectl's columns for these kinds come from the CRDs' printer columns, some
of them from ``status`` (a Gateway's PROGRAMMED, a GatewayClass's ACCEPTED),
so these cells read the whole object, not just its spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["GATEWAY_API_COLUMNS"]

_Cell = Callable[[Mapping[str, Any]], str]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _spec(field: str) -> _Cell:
    def cell(doc: Mapping[str, Any]) -> str:
        value = _map(doc.get("spec")).get(field)
        if value is None or value == []:
            return "<none>"
        return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)

    return cell


def _condition(kind: str) -> _Cell:
    """The status of condition ``kind`` (``True``/``False``), ``Unknown`` without one."""

    def cell(doc: Mapping[str, Any]) -> str:
        for c in _map(doc.get("status")).get("conditions") or ():
            if isinstance(c, Mapping) and c.get("type") == kind:
                return str(c.get("status", "Unknown"))
        return "Unknown"

    return cell


def _address(doc: Mapping[str, Any]) -> str:
    addresses = _map(doc.get("status")).get("addresses") or ()
    values = [str(a.get("value")) for a in addresses if isinstance(a, Mapping)]
    return ",".join(values) or "<none>"


def _listeners(doc: Mapping[str, Any]) -> str:
    listeners = _map(doc.get("spec")).get("listeners") or ()
    shown = [
        f"{x.get('name')}:{x.get('protocol')}/{x.get('port')}"
        for x in listeners
        if isinstance(x, Mapping)
    ]
    return ",".join(shown) or "<none>"


def _parents(doc: Mapping[str, Any]) -> str:
    refs = _map(doc.get("spec")).get("parentRefs") or ()
    shown = [
        str(r.get("name")) + (f"/{r['sectionName']}" if r.get("sectionName") else "")
        for r in refs
        if isinstance(r, Mapping)
    ]
    return ",".join(shown) or "<none>"


def _route_accepted(doc: Mapping[str, Any]) -> str:
    """``True`` when every parent accepted the route, ``False`` when one did not."""
    parents = _map(doc.get("status")).get("parents") or ()
    states = set()
    for parent in parents:
        for c in _map(parent).get("conditions") or ():
            if isinstance(c, Mapping) and c.get("type") == "Accepted":
                states.add(str(c.get("status")))
    if not states:
        return "Unknown"
    return "False" if "False" in states else "True"


_ROUTE: Final = (
    ("HOSTNAMES", _spec("hostnames")),
    ("PARENTS", _parents),
    ("ACCEPTED", _route_accepted),
)

#: Internal kind -> (header, cell) pairs; cells get the whole object.
GATEWAY_API_COLUMNS: Final[dict[str, tuple[tuple[str, _Cell], ...]]] = {
    "GatewayClass": (("CONTROLLER", _spec("controllerName")), ("ACCEPTED", _condition("Accepted"))),
    "KubernetesGateway": (
        ("CLASS", _spec("gatewayClassName")),
        ("ADDRESS", _address),
        ("PROGRAMMED", _condition("Programmed")),
        ("LISTENERS", _listeners),
    ),
    "HTTPRoute": _ROUTE,
    "GRPCRoute": _ROUTE,
    "TLSRoute": _ROUTE,
    "TCPRoute": (("PARENTS", _parents), ("ACCEPTED", _route_accepted)),
}
