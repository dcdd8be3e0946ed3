"""IR for listeners and their filter chains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pilotfish.ir.routes import RouteConfig
from pilotfish.ir.security import AuthzPolicy, DownstreamTls, JwtAuthn
from pilotfish.ir.telemetry import AccessLog, Metrics, Tracing

__all__ = [
    "FilterChain",
    "FilterChainMatch",
    "HttpConnectionManager",
    "Listener",
    "NetworkFilter",
    "TcpProxy",
]


@dataclass(frozen=True, slots=True)
class HttpConnectionManager:
    """HTTP processing. Routes come over RDS by ``route_config_name`` unless
    ``inline_routes`` is given (used for inbound, whose routes are local)."""

    stat_prefix: str
    route_config_name: str = ""
    inline_routes: RouteConfig | None = None
    direction: Literal["outbound", "inbound"] = "outbound"
    # Names of HTTP filters before the router, in order (e.g. "fault", "cors").
    http_filters: tuple[str, ...] = ()
    # Inbound: pass the caller's verified identity to the app in
    # x-forwarded-client-cert (replacing whatever the caller sent).
    forward_client_cert: bool = False
    # Security filters, run before the others: JWT validation, then
    # authorization (DENY policies, then ALLOW, AUDIT only logs).
    jwt: JwtAuthn | None = None
    authz: tuple[AuthzPolicy, ...] = ()
    # The workload's policy is enforced per route: the security filters are
    # always present with a fixed configuration, and ``jwt``/``authz`` are
    # copied onto the virtual hosts of the routes served (``RoutePolicy``), so
    # a policy change never changes the listener. Without it ``authz`` and the
    # JWT rule are the filters' own configuration.
    policy_per_route: bool = False
    # Telemetry (ir/telemetry.py): Istio's standard metrics, the tracer and
    # access logs resolved for this connection manager; None/() is off.
    metrics: Metrics | None = None
    tracing: Tracing | None = None
    access_logs: tuple[AccessLog, ...] = ()


@dataclass(frozen=True, slots=True)
class TcpProxy:
    """Proxy the connection's bytes to ``cluster``. ``authz`` is decided once per
    connection, when the client's first bytes arrive and before they are proxied
    (DENY policies, then ALLOW, AUDIT only logs); a denied connection is closed.
    Its rules hold only attributes a TCP connection has (no HTTP fields)."""

    stat_prefix: str
    cluster: str
    authz: tuple[AuthzPolicy, ...] = ()
    # (cluster, weight) pairs; when set they replace ``cluster`` (VirtualService
    # ``tcp``/``tls`` routes splitting connections by weight).
    weighted_clusters: tuple[tuple[str, int], ...] = ()
    # Istio's TCP metrics and access logs for this proxy (ir/telemetry.py).
    metrics: Metrics | None = None
    access_logs: tuple[AccessLog, ...] = ()


NetworkFilter = HttpConnectionManager | TcpProxy


@dataclass(frozen=True, slots=True)
class FilterChainMatch:
    destination_port: int | None = None
    prefix_ranges: tuple[str, ...] = ()  # CIDRs, e.g. "10.96.0.12/32"
    transport_protocol: str | None = None
    application_protocols: tuple[str, ...] = ()
    server_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FilterChain:
    name: str
    filter: NetworkFilter
    match: FilterChainMatch | None = None
    tls: DownstreamTls | None = None  # terminate TLS on this chain


@dataclass(frozen=True, slots=True)
class Listener:
    """A listener. ``bind_to_port=False`` listeners only receive connections handed
    over by a ``use_original_dst`` listener (Istio's virtualOutbound pattern)."""

    name: str
    address: str
    port: int
    filter_chains: tuple[FilterChain, ...] = ()
    default_chain: FilterChain | None = None
    bind_to_port: bool = True
    use_original_dst: bool = False
    direction: Literal["outbound", "inbound", "gateway"] = "outbound"
    # Listener filters to sniff the protocol (http_inspector / tls_inspector).
    inspect_http: bool = False
    inspect_tls: bool = False
