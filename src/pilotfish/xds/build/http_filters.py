"""HTTP filters of an HttpConnectionManager, through one small registry.

A filter is known by the short name the IR uses in
``HttpConnectionManager.http_filters`` (``"fault"``, ``"cors"``, ...). Each name
maps to an ``HttpFilterBuilder``: a pure function of the IR connection manager
returning one ``HttpFilter`` proto. Adding a filter is one function plus one
entry in ``HTTP_FILTERS``. The registry's ``"router"`` entry is special: it is
always appended last (Envoy requires the terminal filter at the end) and may
not be listed by the IR.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotfish import ir
from pilotfish.xds.build._common import any_of
from pilotfish.xds.build.jwt import build_jwt_authn_filter
from pilotfish.xds.build.rbac import (
    build_rbac_allow_filter,
    build_rbac_audit_filter,
    build_rbac_deny_filter,
)
from pilotfish.xds.build.route_filters import build_cors_filter, build_fault_filter

__all__ = [
    "HTTP_FILTERS",
    "ROUTER",
    "ROUTER_FILTER_NAME",
    "HttpFilterBuilder",
    "UnknownHttpFilterError",
    "build_http_filters",
    "build_router_filter",
]

ROUTER_FILTER_NAME = "envoy.filters.http.router"
ROUTER = "router"

HttpFilterBuilder = Callable[[ir.HttpConnectionManager], hcm_pb2.HttpFilter]


class UnknownHttpFilterError(ValueError):
    """The IR names an HTTP filter that has no registered builder."""


def build_router_filter(_hcm: ir.HttpConnectionManager) -> hcm_pb2.HttpFilter:
    """The terminal router filter (no options: Envoy's defaults, as Istio uses)."""
    return hcm_pb2.HttpFilter(name=ROUTER_FILTER_NAME, typed_config=any_of(router_pb2.Router()))


# Short IR name -> builder. Immutable; pass another mapping to
# ``build_http_filters`` to extend it (tests, experiments).
HTTP_FILTERS: Mapping[str, HttpFilterBuilder] = MappingProxyType(
    {
        ROUTER: build_router_filter,
        # Security filters (read ``hcm.jwt`` / ``hcm.authz``); the IR lists them first.
        "jwt_authn": build_jwt_authn_filter,
        "rbac_deny": build_rbac_deny_filter,
        "rbac_allow": build_rbac_allow_filter,
        "rbac_audit": build_rbac_audit_filter,
        # Per-route features (the routes carry their settings); see route_filters.
        "fault": build_fault_filter,
        "cors": build_cors_filter,
    }
)


def build_http_filters(
    hcm: ir.HttpConnectionManager,
    registry: Mapping[str, HttpFilterBuilder] = HTTP_FILTERS,
) -> list[hcm_pb2.HttpFilter]:
    """The filters named by ``hcm.http_filters``, in order, then the router.

    Raises ``UnknownHttpFilterError`` for a name without a builder, including
    ``"router"`` itself: the IR lists only the filters *before* the router.
    """
    filters: list[hcm_pb2.HttpFilter] = []
    for name in hcm.http_filters:
        builder = registry.get(name) if name != ROUTER else None
        if builder is None:
            known = ", ".join(sorted(n for n in registry if n != ROUTER)) or "none"
            raise UnknownHttpFilterError(
                f"unknown HTTP filter {name!r} in {hcm.stat_prefix!r} (known: {known}; "
                "the router is always added last)"
            )
        filters.append(builder(hcm))
    filters.append(registry.get(ROUTER, build_router_filter)(hcm))
    return filters
