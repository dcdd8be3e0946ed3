"""The HTTP filter registry: each filter is one ``HttpFilter`` object, registered here.

Theory of operation: an HTTP filter has four facts, and they live together
in one ``HttpFilter``: its short IR ``name`` and Envoy ``envoy_name``; when a
connection manager needs it (``wanted``, a pure function of the IR connection
manager and the routes it serves); its listener-level configuration
(``listener_config``); and, for filters configured per route, the route's
or the virtual host's ``typed_per_filter_config`` entry (``route_config``,
``vhost_config``). ``HTTP_FILTERS`` lists
them in chain order, which is the only place that order is written.

Both stages read the registry. Translation asks ``with_http_filters`` to list,
on a connection manager, the filters it needs (it knows the routes an RDS
connection manager will serve; the build does not); the build turns the
listed names into ``HttpFilter`` protos in that order, then appends the
terminal router, and puts each route's per-filter configuration on it. So a
new filter (stats, tracing, a policy) is one ``HttpFilter`` here, built from
functions of its own module, and one entry in ``HTTP_FILTERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from pilotfish import ir
from pilotfish.xds.build._common import any_of
from pilotfish.xds.build.grpc_messages import (
    GRPC_MESSAGE_METRICS,
    GRPC_MESSAGES_FILTER,
    build_grpc_message_counter,
)
from pilotfish.xds.build.jwt import build_jwt_authn
from pilotfish.xds.build.peer_headers import (
    PEER_HEADERS_FILTER,
    PEER_METADATA_FILTER,
    build_peer_headers,
    build_peer_metadata,
    build_route_service_headers,
)
from pilotfish.xds.build.rbac import JWT_FILTER_NAME, RBAC_FILTER_NAME, build_rbac
from pilotfish.xds.build.route_filters import build_cors_policy, build_fault
from pilotfish.xds.build.route_policy import build_jwt_per_route, build_rbac_per_route

__all__ = [
    "FILTERS_BY_NAME",
    "HTTP_FILTERS",
    "ROUTER",
    "HttpFilter",
    "UnknownHttpFilterError",
    "build_http_filters",
    "http_filter",
    "http_filter_names",
    "set_route_filter_configs",
    "set_vhost_filter_configs",
    "with_http_filters",
]

Wanted = Callable[[ir.HttpConnectionManager, Sequence[ir.Route]], bool]


@dataclass(frozen=True, slots=True)
class HttpFilter:
    """One HTTP filter (see the module docstring)."""

    name: str
    envoy_name: str
    wanted: Wanted
    listener_config: Callable[[ir.HttpConnectionManager], Message]
    route_config: Callable[[ir.Route], Message | None] | None = None
    # For filters configured per virtual host (the workload's security policy).
    vhost_config: Callable[[ir.VirtualHost], Message | None] | None = None


class UnknownHttpFilterError(ValueError):
    """The IR names an HTTP filter that is not registered."""


def _rbac(action: str) -> HttpFilter:
    """An RBAC filter for the policies of ``action`` (one per action: a request
    denied by one never reaches the next). On a connection manager enforcing
    its workload's policy per route it is always there, with no rules of its
    own (``xds/build/route_policy.py``); otherwise it holds ``hcm.authz``'s."""

    def listener_config(hcm: ir.HttpConnectionManager) -> Message:
        if hcm.policy_per_route:
            return rbac_filter_pb2.RBAC()
        return build_rbac(hcm.authz, action)

    return HttpFilter(
        name=f"rbac_{action.lower()}",
        envoy_name=f"{RBAC_FILTER_NAME}.{action.lower()}",
        wanted=lambda hcm, _routes: (
            hcm.policy_per_route or any(p.action == action for p in hcm.authz)
        ),
        listener_config=listener_config,
        vhost_config=lambda vhost: build_rbac_per_route(vhost, action),
    )


def _jwt_config(hcm: ir.HttpConnectionManager) -> Message:
    if hcm.jwt is None:
        raise ValueError(f"{hcm.stat_prefix!r} lists jwt_authn but has no JWT providers")
    return build_jwt_authn(hcm.jwt, per_route=hcm.policy_per_route)


def _fault(route: ir.Route) -> Message | None:
    return build_fault(route.fault) if route.fault is not None else None


def _cors(route: ir.Route) -> Message | None:
    return build_cors_policy(route.cors) if route.cors is not None else None


# The terminal filter: always last, never listed by the IR (Envoy's defaults, as Istio).
ROUTER = HttpFilter(
    name="router",
    envoy_name="envoy.filters.http.router",
    wanted=lambda _hcm, _routes: False,
    listener_config=lambda _hcm: router_pb2.Router(),
)

# Chain order. After the peer headers' removal, security (JWT validation, so
# claims are known; then authorization: DENY, ALLOW, AUDIT), then the per-route
# features, in Istio's order (fault, then CORS), each present only where
# something uses it.
HTTP_FILTERS: tuple[HttpFilter, ...] = (
    # First of all, an inbound connection manager takes the caller proxy's peer
    # headers off the request (the app never sees them) into metadata the
    # stats loggers read (xds/build/peer_headers.py).
    HttpFilter(
        name="peer_metadata",
        envoy_name=PEER_METADATA_FILTER,
        wanted=lambda hcm, _routes: hcm.direction == "inbound",
        listener_config=lambda _hcm: build_peer_metadata(),
    ),
    # gRPC message counts for Istio's message metrics (xds/build/grpc_messages.py),
    # run for gRPC requests only.
    HttpFilter(
        name="grpc_messages",
        envoy_name=GRPC_MESSAGES_FILTER,
        wanted=lambda hcm, _routes: (
            hcm.metrics is not None and not hcm.metrics.disabled >= GRPC_MESSAGE_METRICS
        ),
        listener_config=lambda _hcm: build_grpc_message_counter(),
    ),
    HttpFilter(
        name="jwt_authn",
        envoy_name=JWT_FILTER_NAME,
        wanted=lambda hcm, _routes: hcm.jwt is not None,
        listener_config=_jwt_config,
        vhost_config=build_jwt_per_route,
    ),
    _rbac("DENY"),
    _rbac("ALLOW"),
    _rbac("AUDIT"),
    # Fault and CORS run with empty configuration (no faults, no CORS); each route
    # that uses them carries its settings under the filter's name.
    HttpFilter(
        name="fault",
        envoy_name="envoy.filters.http.fault",
        wanted=lambda _hcm, routes: any(r.fault is not None for r in routes),
        listener_config=lambda _hcm: fault_pb2.HTTPFault(),
        route_config=_fault,
    ),
    HttpFilter(
        name="cors",
        envoy_name="envoy.filters.http.cors",
        wanted=lambda _hcm, routes: any(r.cors is not None for r in routes),
        listener_config=lambda _hcm: cors_pb2.Cors(),
        route_config=_cors,
    ),
    # A source-reporting proxy (or a waypoint, as the caller it is for the pod)
    # tells the server who calls and which service it called
    # (xds/build/peer_headers.py), overwriting what the app sent; its own metrics
    # read the service from the same headers.
    HttpFilter(
        name="peer_headers",
        envoy_name=PEER_HEADERS_FILTER,
        wanted=lambda hcm, _routes: (
            hcm.metrics is not None and hcm.metrics.reporter in ("source", "waypoint")
        ),
        listener_config=lambda _hcm: build_peer_headers(),
        route_config=build_route_service_headers,
    ),
)

FILTERS_BY_NAME: Mapping[str, HttpFilter] = MappingProxyType({f.name: f for f in HTTP_FILTERS})


def http_filter(name: str) -> HttpFilter:
    """The registered filter with IR name ``name`` (``KeyError`` if none)."""
    return FILTERS_BY_NAME[name]


def http_filter_names(
    hcm: ir.HttpConnectionManager,
    routes: Sequence[ir.Route],
    registry: Sequence[HttpFilter] = HTTP_FILTERS,
) -> tuple[str, ...]:
    """The filters ``hcm`` needs to serve ``routes`` (or already lists), in chain order."""
    return tuple(f.name for f in registry if f.name in hcm.http_filters or f.wanted(hcm, routes))


def with_http_filters(
    hcm: ir.HttpConnectionManager, routes: Iterable[ir.Route] = ()
) -> ir.HttpConnectionManager:
    """``hcm`` listing every filter it needs for its own settings and ``routes``
    (``hcm`` itself when that changes nothing)."""
    names = http_filter_names(hcm, tuple(routes))
    return hcm if names == hcm.http_filters else replace(hcm, http_filters=names)


def _proto(flt: HttpFilter, hcm: ir.HttpConnectionManager) -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=flt.envoy_name, typed_config=any_of(flt.listener_config(hcm)))


def build_http_filters(
    hcm: ir.HttpConnectionManager, registry: Sequence[HttpFilter] = HTTP_FILTERS
) -> list[hcm_pb2.HttpFilter]:
    """The filters named by ``hcm.http_filters``, in that order, then the router.

    Raises ``UnknownHttpFilterError`` for a name not in ``registry``, including
    ``"router"`` itself: the IR lists only the filters *before* the router.
    """
    by_name = {f.name: f for f in registry}
    filters: list[hcm_pb2.HttpFilter] = []
    for name in hcm.http_filters:
        flt = by_name.get(name)
        if flt is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise UnknownHttpFilterError(
                f"unknown HTTP filter {name!r} in {hcm.stat_prefix!r} (known: {known}; "
                "the router is always added last)"
            )
        filters.append(_proto(flt, hcm))
    filters.append(_proto(ROUTER, hcm))
    return filters


def set_route_filter_configs(
    route: ir.Route, proto: rc_pb2.Route, registry: Sequence[HttpFilter] = HTTP_FILTERS
) -> None:
    """Put each filter's per-route settings for ``route`` into
    ``proto.typed_per_filter_config``, under the filter's Envoy name."""
    for flt in registry:
        if flt.route_config is None:
            continue
        config = flt.route_config(route)
        if config is not None:
            proto.typed_per_filter_config[flt.envoy_name].CopyFrom(any_of(config))


def set_vhost_filter_configs(
    vhost: ir.VirtualHost, proto: rc_pb2.VirtualHost, registry: Sequence[HttpFilter] = HTTP_FILTERS
) -> None:
    """Put each filter's settings for ``vhost`` (its workload's policy) into
    ``proto.typed_per_filter_config``, under the filter's Envoy name."""
    for flt in registry:
        if flt.vhost_config is None:
            continue
        config = flt.vhost_config(vhost)
        if config is not None:
            proto.typed_per_filter_config[flt.envoy_name].CopyFrom(any_of(config))
