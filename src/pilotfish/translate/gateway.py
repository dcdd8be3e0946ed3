"""Gateway configuration: Gateway servers become listeners, bound VirtualServices routes.

Theory of operation: a gateway proxy serves every Gateway whose ``selector``
matches its labels. Servers are grouped by port: one listener per port
(``0.0.0.0_8080``) with RDS ``http.8080``. A VirtualService contributes to a
port when it names one of that port's Gateways in ``gateways:`` and one of its
hosts falls within a server's ``hosts`` (``ns/host`` restricts the
VirtualService's namespace). Each matching VirtualService host becomes a
virtual host; VirtualServices sharing a host are merged in order. Clusters are
the same outbound clusters sidecars get.

Plain TCP servers proxy to VirtualService ``tcp`` routes (``gateway_tcp``).

TLS servers (``translate.security.gateway_tls`` builds their TLS): a port
with terminating servers (``SIMPLE``, ``MUTUAL``...) gets one filter chain per
server behind TLS, each with its own route configuration
``https.<port>.<portName>.<gateway>.<namespace>`` as in Istio, selected by SNI
(the server's hosts) when the port has several; there a host that another
server serves, or that this one does not, answers 421 (``misdirected``).
``PASSTHROUGH`` servers add SNI chains that TCP-proxy to VirtualService
``tls`` routes. A ``TLS`` server in a terminating mode (Istio's TLS-terminated
TCP, and Gateway API ``TLS`` listeners in ``Terminate`` mode) gets the same SNI
chains from ``tls`` routes, or else the ``tcp`` route chain, each behind the
server's TLS: the gateway decrypts and forwards plain TCP. ``httpsRedirect``
on a plain-HTTP server makes its virtual hosts answer 301 to HTTPS. A port
cannot mix plaintext and TLS servers: the plaintext ones are skipped (logged),
as is a TLS server whose certificate is missing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace

from pilotfish.api.networking.gateway import GatewaySpec, Server
from pilotfish.api.resource import Resource
from pilotfish.ir import (
    DownstreamTls,
    FilterChain,
    FilterChainMatch,
    HttpConnectionManager,
    Listener,
    Route,
    RouteConfig,
    VirtualHost,
    credential_name,
)
from pilotfish.model.hosts import fqdn
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.gateway_markers import BACKEND_CLIENT_CERT_ANNOTATION
from pilotfish.translate.gateway_tcp import tcp_chain, tcp_listener
from pilotfish.translate.http_routes import RouteContext, http_routes
from pilotfish.translate.misdirected import with_misdirected_hosts
from pilotfish.translate.names import gateway_route_name
from pilotfish.translate.route_filters import with_route_filters
from pilotfish.translate.route_semantics import SCOPE_NAMESPACE
from pilotfish.translate.security.authz import authz_policies
from pilotfish.translate.security.gateway_tls import (
    TERMINATING_MODES,
    https_route_name,
    passthrough_chains,
    server_downstream_tls,
    sni_server_names,
)
from pilotfish.translate.security.http_filters import with_workload_security
from pilotfish.translate.security.route_policy import with_route_policies
from pilotfish.translate.telemetry_metrics import with_metrics
from pilotfish.translate.virtual_hosts import bound_gateways, dedupe_domains, host_matches

__all__ = ["GatewayParts", "backend_client_credential", "gateway_listeners", "selected_gateways"]

log = logging.getLogger("pilotfish.translate")

_HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC"})
_TERMINATED_PROTOCOLS = _HTTP_PROTOCOLS | {"HTTPS"}
_PASSTHROUGH_PROTOCOLS = frozenset({"TLS", "HTTPS"})


@dataclass(frozen=True)
class GatewayParts:
    listeners: tuple[Listener, ...]
    route_configs: tuple[RouteConfig, ...]


def selected_gateways(
    snapshot: Snapshot, labels: dict[str, str], namespace: str | None = None
) -> list[Resource]:
    """The Gateways whose selector matches ``labels``. A Gateway derived from a
    Gateway API Gateway selects only its own namespace's workloads
    (``SCOPE_NAMESPACE``), as the Gateway API's deployments are per namespace."""
    out = []
    for gw in snapshot.of_kind("Gateway"):
        spec = gw.spec
        assert isinstance(spec, GatewaySpec)
        scope = gw.metadata.annotations.get(SCOPE_NAMESPACE)
        if scope is not None and namespace is not None and scope != namespace:
            continue
        if spec.selector and all(labels.get(k) == v for k, v in spec.selector.items()):
            out.append(gw)
    return out


def backend_client_credential(snapshot: Snapshot, view: ProxyView) -> str:
    """The credential a gateway proxy presents to BackendTLSPolicy backends: the
    Secret its Gateway API Gateway's ``spec.tls.backend`` names, as the converter
    marks it on the Istio Gateways it derives; "" for none."""
    for gw in selected_gateways(snapshot, view.label_map, view.namespace):
        secret = gw.metadata.annotations.get(BACKEND_CLIENT_CERT_ANNOTATION)
        if secret:
            return credential_name(gw.namespace, secret)
    return ""


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


def _http_filter(
    snapshot: Snapshot,
    view: ProxyView,
    name: str,
    route_name: str,
    port: int,
    *,
    forward_client_cert: bool = False,
) -> HttpConnectionManager:
    # JWT and authorization of the gateway workload, for this server port.
    return with_workload_security(
        with_metrics(
            HttpConnectionManager(
                f"outbound_{name}",
                route_config_name=route_name,
                forward_client_cert=forward_client_cert,
            ),
            "source",
        ),
        snapshot,
        view.namespace,
        view.label_map,
        port,
        gateway=True,
    )


def _gateway_domains(host: str, port: int) -> list[str]:
    """A gateway virtual host's domains: the host with any port in the Host header,
    as Istio writes them (a client may name a port the gateway is published on
    rather than the one it listens on). Envoy allows one wildcard per domain, so
    a wildcard host keeps the listener's port instead."""
    if host.startswith("*"):
        return [host, f"{host}:{port}"]
    return [host, f"{host}:*"]


def _route_config(
    snapshot: Snapshot,
    view: ProxyView,
    port: int,
    servers: list[tuple[str, Server]],
    route_name: str,
) -> RouteConfig:
    """The virtual hosts of ``servers`` (``ns/name`` of their Gateway, server) on
    ``port``; hosts of a server with ``httpsRedirect`` require TLS."""
    redirecting = [(k, s) for k, s in servers if s.tls is not None and s.tls.https_redirect]
    vhosts: dict[str, tuple[list[str], list[Route]]] = {}
    secure: set[str] = set()
    for vs in snapshot.of_kind("VirtualService"):
        hosts = _vs_hosts_for(vs, servers, snapshot.domain_suffix)
        if not hosts:
            continue
        gw_key = next(k for k, _ in servers if k in bound_gateways(vs))
        # DestinationRules are looked up from the gateway proxy's namespace, as for
        # its clusters, so a route's hash policy and its cluster agree.
        ctx = RouteContext(snapshot, view.namespace, port, gateway=gw_key, proxy_labels=view.labels)
        routes = http_routes(vs, ctx)
        for host in hosts:
            domains, existing = vhosts.setdefault(host, (_gateway_domains(host, port), []))
            existing.extend(routes)
        if redirecting:
            secure.update(_vs_hosts_for(vs, redirecting, snapshot.domain_suffix))
    taken: set[str] = set()
    ir_vhosts = []
    for host in sorted(vhosts, key=lambda h: (h == "*", h)):
        domains, routes = vhosts[host]
        unique = dedupe_domains(["*"] if host == "*" else domains, taken)
        if unique and routes:
            ir_vhosts.append(
                VirtualHost(f"{host}:{port}", unique, tuple(routes), require_tls=host in secure)
            )
    return RouteConfig(route_name, tuple(ir_vhosts))


def _distinct_sni(chains: list[FilterChain], port: int) -> list[FilterChain]:
    """Chains whose SNI sets do not overlap (Envoy rejects a listener otherwise):
    a name already claimed by an earlier chain is dropped from a later one, and a
    chain left with nothing to match is skipped (logged)."""
    claimed: set[str] = set()
    catch_all = False
    out: list[FilterChain] = []
    for chain in chains:
        names = chain.match.server_names if chain.match is not None else ()
        if not names:
            if catch_all:
                log.warning("gateway port %d: %s duplicates another server", port, chain.name)
                continue
            catch_all = True
            out.append(chain)
            continue
        left = tuple(n for n in names if n not in claimed)
        if not left:
            log.warning("gateway port %d: %s duplicates another server", port, chain.name)
            continue
        claimed.update(left)
        out.append(replace(chain, match=FilterChainMatch(server_names=left)))
    return out


def _terminated_tcp_chains(
    snapshot: Snapshot,
    view: ProxyView,
    port: int,
    gw: Resource,
    server: Server,
    tls: DownstreamTls,
) -> list[FilterChain]:
    """The chains of a ``TLS`` server whose TLS the gateway terminates: its
    VirtualServices' ``tls`` routes by SNI, or else their ``tcp`` route, each
    proxying the decrypted bytes."""
    key = f"{gw.namespace}/{gw.name}"
    authz = authz_policies(snapshot, view.namespace, view.label_map, port, tcp=True)
    by_sni = passthrough_chains(snapshot, port, [(key, server)], authz=authz)
    if by_sni:
        return [replace(chain, tls=tls) for chain in by_sni]
    name = f"{key}/{server.port.name or port}/tcp"
    chain = tcp_chain(snapshot, view, port, {key}, name)
    if chain is None:
        return []
    return [replace(chain, match=FilterChainMatch(server_names=sni_server_names(server)), tls=tls)]


def _tls_listener(
    snapshot: Snapshot,
    view: ProxyView,
    port: int,
    terminating: list[tuple[Resource, Server]],
    passthrough: list[tuple[Resource, Server]],
) -> tuple[Listener | None, list[RouteConfig]]:
    name = f"0.0.0.0_{port}"
    chains: list[FilterChain] = []
    route_configs: list[RouteConfig] = []
    route_names: set[str] = set()
    for gw, server in terminating:
        tls = server_downstream_tls(snapshot, view, gw, server)
        if tls is None:
            continue
        if server.port.protocol.upper() == "TLS":
            chains += _terminated_tcp_chains(snapshot, view, port, gw, server, tls)
            continue
        route_name = base = https_route_name(port, server, gw)
        index = 1
        while route_name in route_names:
            index += 1
            route_name = f"{base}.{index}"
        route_names.add(route_name)
        key = f"{gw.namespace}/{gw.name}"
        route_configs.append(_route_config(snapshot, view, port, [(key, server)], route_name))
        hcm = _http_filter(
            snapshot, view, name, route_name, port, forward_client_cert=tls.trusted_ca is not None
        )
        match = FilterChainMatch(server_names=sni_server_names(server))
        chains.append(FilterChain(route_name, hcm, match, tls=tls))
    chains += passthrough_chains(
        snapshot,
        port,
        [(f"{gw.namespace}/{gw.name}", server) for gw, server in passthrough],
        # Authorization of the gateway workload, for TLS connections it passes through.
        authz=authz_policies(snapshot, view.namespace, view.label_map, port, tcp=True),
    )
    chains = _distinct_sni(chains, port)
    # A reused HTTP/2 connection's host that its SNI's server does not serve: 421.
    route_configs = with_misdirected_hosts(
        chains, route_configs, lambda host: _gateway_domains(host, port)
    )
    if len(chains) == 1 and chains[0].tls is not None:
        # One terminating server: serve it whatever SNI (or none) the client sends.
        chains = [replace(chains[0], match=None)]
    if not chains:
        return None, route_configs
    listener = Listener(
        name,
        view.bind_ip,
        view.app_port(port),
        tuple(chains),
        direction="gateway",
        inspect_tls=True,
    )
    return listener, route_configs


def gateway_listeners(snapshot: Snapshot, view: ProxyView) -> GatewayParts:
    by_port: dict[int, list[tuple[str, Server]]] = defaultdict(list)
    terminating: dict[int, list[tuple[Resource, Server]]] = defaultdict(list)
    passthrough: dict[int, list[tuple[Resource, Server]]] = defaultdict(list)
    tcp: dict[int, list[tuple[str, Server]]] = defaultdict(list)
    for gw in selected_gateways(snapshot, view.label_map, view.namespace):
        spec = gw.spec
        assert isinstance(spec, GatewaySpec)
        for server in spec.servers:
            protocol = server.port.protocol.upper()
            mode = server.tls.mode if server.tls is not None else None
            number = server.port.number
            if mode is None and protocol in _HTTP_PROTOCOLS:
                by_port[number].append((f"{gw.namespace}/{gw.name}", server))
            elif mode in TERMINATING_MODES and protocol in _TERMINATED_PROTOCOLS | {"TLS"}:
                terminating[number].append((gw, server))
            elif mode == "PASSTHROUGH" and protocol in _PASSTHROUGH_PROTOCOLS:
                passthrough[number].append((gw, server))
            elif mode is None and protocol == "TCP":
                tcp[number].append((f"{gw.namespace}/{gw.name}", server))
            else:
                log.info(
                    "gateway %s/%s: %s server (tls mode %s) on port %d is not served",
                    gw.namespace,
                    gw.name,
                    protocol,
                    mode or "none",
                    number,
                )

    listeners: list[Listener] = []
    route_configs: list[RouteConfig] = []
    for port in sorted(by_port):
        if port in terminating or port in passthrough:
            log.warning("gateway port %d has TLS servers: its plaintext servers are ignored", port)
            continue
        servers = by_port[port]
        route_name = gateway_route_name(port)
        route_configs.append(_route_config(snapshot, view, port, servers, route_name))
        name = f"0.0.0.0_{port}"
        listeners.append(
            Listener(
                name,
                view.bind_ip,
                # A gateway published under another host port listens there
                # (its APP_PORTS map server port -> listen port).
                view.app_port(port),
                (),
                FilterChain(name, _http_filter(snapshot, view, name, route_name, port)),
                direction="gateway",
            )
        )
    for port in sorted(set(terminating) | set(passthrough)):
        listener, tls_routes = _tls_listener(
            snapshot, view, port, terminating.get(port, []), passthrough.get(port, [])
        )
        route_configs += tls_routes
        if listener is not None:
            listeners.append(listener)
    for port in sorted(set(tcp) - set(by_port) - set(terminating) - set(passthrough)):
        tcp_only = tcp_listener(snapshot, view, port, tcp[port])
        if tcp_only is not None:
            listeners.append(tcp_only)
    # Fault injection and CORS need their filters on the connection managers.
    listeners = list(with_route_filters(listeners, route_configs))
    # The gateway's JWT and authorization policy travels with its routes.
    route_configs = list(with_route_policies(listeners, route_configs))
    listeners.sort(key=lambda x: x.name)
    route_configs.sort(key=lambda x: x.name)
    return GatewayParts(tuple(listeners), tuple(route_configs))
