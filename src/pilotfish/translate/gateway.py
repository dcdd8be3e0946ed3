"""Gateway configuration: Gateway servers become listeners, bound VirtualServices routes.

Theory of operation: a gateway proxy serves every Gateway whose ``selector``
matches its labels. Servers are grouped by port: one listener per port
(``0.0.0.0_8080``) with RDS ``http.8080``. A VirtualService contributes to a
port when it names one of that port's Gateways in ``gateways:`` and one of its
hosts falls within a server's ``hosts`` (``ns/host`` restricts the
VirtualService's namespace). Each matching VirtualService host becomes a
virtual host; VirtualServices sharing a host are merged in order. Clusters are
the same outbound clusters sidecars get. Only plain-HTTP servers are served
here; TLS servers are skipped with a log line until TLS support lands.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from pilotfish.api.networking.gateway import GatewaySpec, Server
from pilotfish.api.resource import Resource
from pilotfish.ir import (
    FilterChain,
    HttpConnectionManager,
    Listener,
    Route,
    RouteConfig,
    VirtualHost,
)
from pilotfish.model.hosts import fqdn
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.http_routes import RouteContext, http_routes
from pilotfish.translate.names import gateway_route_name
from pilotfish.translate.virtual_hosts import bound_gateways, dedupe_domains, host_matches

__all__ = ["GatewayParts", "gateway_listeners", "selected_gateways"]

log = logging.getLogger("pilotfish.translate")

_HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC"})


@dataclass(frozen=True)
class GatewayParts:
    listeners: tuple[Listener, ...]
    route_configs: tuple[RouteConfig, ...]


def selected_gateways(snapshot: Snapshot, labels: dict[str, str]) -> list[Resource]:
    out = []
    for gw in snapshot.of_kind("Gateway"):
        spec = gw.spec
        assert isinstance(spec, GatewaySpec)
        if spec.selector and all(labels.get(k) == v for k, v in spec.selector.items()):
            out.append(gw)
    return out


def _server_hosts(server: Server) -> list[tuple[str, str]]:
    """(namespace filter, host pattern) pairs; ``*`` namespace means any."""
    out = []
    for h in server.hosts:
        ns, _, host = h.rpartition("/")
        out.append((ns if ns and ns != "*" else "*", host.lower()))
    return out


def _vs_hosts_for(vs: Resource, servers: list[tuple[str, Server]], suffix: str) -> list[str]:
    """The VirtualService hosts that fall within the servers' hosts."""
    gateways = bound_gateways(vs)
    hosts: list[str] = []
    for gw_key, server in servers:
        if gw_key not in gateways:
            continue
        for ns_filter, pattern in _server_hosts(server):
            if ns_filter not in ("*", ".") and ns_filter != vs.namespace:
                continue
            if ns_filter == "." and gw_key.split("/", 1)[0] != vs.namespace:
                continue
            for host in getattr(vs.spec, "hosts", ()):
                h = host.lower()
                full = fqdn(h, vs.namespace, suffix)
                if (
                    host_matches(pattern, h)
                    or host_matches(pattern, full)
                    or host_matches(h, pattern)
                ) and h not in hosts:
                    hosts.append(h)
    return hosts


def gateway_listeners(snapshot: Snapshot, view: ProxyView) -> GatewayParts:
    by_port: dict[int, list[tuple[str, Server]]] = defaultdict(list)
    for gw in selected_gateways(snapshot, view.label_map):
        spec = gw.spec
        assert isinstance(spec, GatewaySpec)
        for server in spec.servers:
            protocol = server.port.protocol.upper()
            if protocol not in _HTTP_PROTOCOLS or server.tls is not None:
                log.info(
                    "gateway %s/%s: %s server on port %d is not served yet",
                    gw.namespace,
                    gw.name,
                    protocol,
                    server.port.number,
                )
                continue
            by_port[server.port.number].append((f"{gw.namespace}/{gw.name}", server))

    listeners: list[Listener] = []
    route_configs: list[RouteConfig] = []
    for port in sorted(by_port):
        servers = by_port[port]
        route_name = gateway_route_name(port)
        vhosts: dict[str, tuple[list[str], list[Route]]] = {}
        for vs in snapshot.of_kind("VirtualService"):
            hosts = _vs_hosts_for(vs, servers, snapshot.domain_suffix)
            if not hosts:
                continue
            gw_key = next(k for k, _ in servers if k in bound_gateways(vs))
            # DestinationRules are looked up from the gateway proxy's namespace, as for
            # its clusters, so a route's hash policy and its cluster agree.
            ctx = RouteContext(snapshot, view.namespace, port, gateway=gw_key)
            routes = http_routes(vs, ctx)
            for host in hosts:
                domains, existing = vhosts.setdefault(host, ([host, f"{host}:{port}"], []))
                existing.extend(routes)
        taken: set[str] = set()
        ir_vhosts = []
        for host in sorted(vhosts, key=lambda h: (h == "*", h)):
            domains, routes = vhosts[host]
            unique = dedupe_domains(["*"] if host == "*" else domains, taken)
            if unique and routes:
                ir_vhosts.append(VirtualHost(f"{host}:{port}", unique, tuple(routes)))
        route_configs.append(RouteConfig(route_name, tuple(ir_vhosts)))
        name = f"0.0.0.0_{port}"
        listeners.append(
            Listener(
                name,
                view.bind_ip,
                # A gateway published under another host port listens there
                # (its APP_PORTS map server port -> listen port).
                view.app_port(port),
                (),
                FilterChain(
                    name,
                    HttpConnectionManager(
                        f"outbound_{name}",
                        route_config_name=route_name,
                        access_log=snapshot.access_log,
                    ),
                ),
                direction="gateway",
            )
        )
    return GatewayParts(tuple(listeners), tuple(route_configs))
