"""Sidecar configuration: outbound routing to mesh services, inbound to the local app.

Theory of operation. Outbound config depends only on ``ProxyView.outbound_key``
(namespace and listener layout), so all sidecars of a namespace share one
translation; inbound config depends on the proxy's labels (which services
select it) and its app ports.

Two layouts, by interception mode:

- ``REDIRECT`` (iptables sends traffic to the proxy): ``virtualOutbound`` on
  15001 hands each connection, by its original destination, to a per-port
  listener that does not bind (``0.0.0.0_9080``); HTTP ports route by Host
  through RDS ``"9080"``; TCP ports match the service VIP. ``virtualInbound``
  on 15006 picks a filter chain by destination port.
- ``NONE`` (apps dial the proxy): one HTTP proxy listener on
  ``bind_ip:outbound_port`` serving every HTTP service by ``host:port`` through
  RDS ``"http_proxy"``; inbound listeners bind ``bind_ip:<port>`` and forward to
  the app.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pilotfish.ir import (
    Cluster,
    FilterChain,
    FilterChainMatch,
    ForwardAction,
    HttpConnectionManager,
    Listener,
    Route,
    RouteConfig,
    RouteMatch,
    TcpProxy,
    VirtualHost,
    WeightedCluster,
)
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import MeshService, ServicePort
from pilotfish.translate.clusters import fixed_clusters, inbound_cluster_ir, outbound_clusters
from pilotfish.translate.http_routes import RouteContext, default_route, http_routes
from pilotfish.translate.names import (
    HTTP_PROXY_ROUTE,
    INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
    VIRTUAL_INBOUND,
    VIRTUAL_OUTBOUND,
    inbound_cluster,
    outbound_cluster,
)
from pilotfish.translate.security.http_filters import with_workload_security
from pilotfish.translate.security.mtls import inbound_mtls_chains, inbound_passthrough_chains
from pilotfish.translate.security.peer_authn import peer_mtls
from pilotfish.translate.security.tcp_filters import with_tcp_workload_authz
from pilotfish.translate.virtual_hosts import dedupe_domains, service_domains, vs_for_mesh

__all__ = ["InboundParts", "OutboundParts", "sidecar_inbound", "sidecar_outbound"]


@dataclass(frozen=True)
class OutboundParts:
    listeners: tuple[Listener, ...]
    route_configs: tuple[RouteConfig, ...]
    clusters: tuple[Cluster, ...]


@dataclass(frozen=True)
class InboundParts:
    listeners: tuple[Listener, ...]
    clusters: tuple[Cluster, ...]


def _http_ports(snapshot: Snapshot) -> dict[int, list[tuple[MeshService, ServicePort]]]:
    by_port: dict[int, list[tuple[MeshService, ServicePort]]] = defaultdict(list)
    for svc in snapshot.registry.services.values():
        for sp in svc.ports:
            by_port[sp.port].append((svc, sp))
    return by_port


def _vhost(
    svc: MeshService,
    port: int,
    view: ProxyView,
    snapshot: Snapshot,
    vs_by_host: dict[str, object],
    taken: set[str],
    *,
    with_bare: bool,
) -> VirtualHost | None:
    domains = dedupe_domains(
        service_domains(svc, port, view.namespace, snapshot.domain_suffix, with_bare=with_bare),
        taken,
    )
    if not domains:
        return None
    ctx = RouteContext(snapshot, view.namespace, port)
    vs = vs_by_host.get(svc.hostname)
    routes: list[Route] = http_routes(vs, ctx) if vs is not None else []  # type: ignore[arg-type]
    if not routes:
        routes = [default_route(svc.hostname, port, ctx)]
    return VirtualHost(f"{svc.hostname}:{port}", domains, tuple(routes))


def _passthrough_vhost() -> VirtualHost:
    return VirtualHost(
        "allow_any",
        ("*",),
        (
            Route(
                "allow_any",
                RouteMatch(),
                ForwardAction((WeightedCluster(PASSTHROUGH_CLUSTER, 100),), timeout_ms=0),
            ),
        ),
    )


def sidecar_outbound(snapshot: Snapshot, view: ProxyView) -> OutboundParts:
    """Outbound listeners, routes and clusters; depends only on ``view.outbound_key``."""
    vs_by_host: dict[str, object] = dict(vs_for_mesh(snapshot))
    by_port = _http_ports(snapshot)
    listeners: list[Listener] = []
    route_configs: list[RouteConfig] = []

    if view.interception == "REDIRECT":
        for port in sorted(by_port):
            http = [(s, sp) for s, sp in by_port[port] if sp.is_http]
            tcp = [(s, sp) for s, sp in by_port[port] if not sp.is_http]
            chains: list[FilterChain] = []
            for svc, _sp in tcp:
                if not svc.addresses:
                    continue
                cluster = outbound_cluster(svc.hostname, port)
                chains.append(
                    FilterChain(
                        f"{svc.hostname}:{port}",
                        TcpProxy(cluster, cluster),
                        FilterChainMatch(prefix_ranges=tuple(f"{a}/32" for a in svc.addresses)),
                    )
                )
            default: FilterChain | None = None
            if http:
                taken: set[str] = set()
                vhosts = [
                    vh
                    for svc, _sp in http
                    if (vh := _vhost(svc, port, view, snapshot, vs_by_host, taken, with_bare=True))
                ]
                vhosts.append(_passthrough_vhost())
                route_configs.append(RouteConfig(str(port), tuple(vhosts)))
                default = FilterChain(
                    f"0.0.0.0_{port}",
                    HttpConnectionManager(
                        f"outbound_0.0.0.0_{port}",
                        route_config_name=str(port),
                        access_log=snapshot.access_log,
                    ),
                )
            else:
                default = FilterChain(
                    PASSTHROUGH_CLUSTER, TcpProxy(PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER)
                )
            if not chains and not http:
                continue
            listeners.append(
                Listener(
                    f"0.0.0.0_{port}",
                    "0.0.0.0",
                    port,
                    tuple(chains),
                    default,
                    bind_to_port=False,
                    direction="outbound",
                )
            )
        listeners.append(
            Listener(
                VIRTUAL_OUTBOUND,
                "0.0.0.0",
                view.outbound_port,
                (),
                FilterChain(
                    PASSTHROUGH_CLUSTER, TcpProxy(PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER)
                ),
                use_original_dst=True,
                direction="outbound",
            )
        )
    else:
        taken = set()
        vhosts = []
        for port in sorted(by_port):
            for svc, sp in by_port[port]:
                if not sp.is_http:
                    continue
                vh = _vhost(svc, port, view, snapshot, vs_by_host, taken, with_bare=False)
                if vh is not None:
                    vhosts.append(vh)
        route_configs.append(RouteConfig(HTTP_PROXY_ROUTE, tuple(vhosts)))
        name = f"{view.bind_ip}_{view.outbound_port}"
        listeners.append(
            Listener(
                name,
                view.bind_ip,
                view.outbound_port,
                (),
                FilterChain(
                    name,
                    HttpConnectionManager(
                        f"outbound_{name}",
                        route_config_name=HTTP_PROXY_ROUTE,
                        access_log=snapshot.access_log,
                    ),
                ),
                direction="outbound",
            )
        )

    clusters = (
        outbound_clusters(snapshot, view.namespace, workload_certs=view.workload_certs)
        + fixed_clusters()
    )
    return OutboundParts(
        tuple(sorted(listeners, key=lambda x: x.name)),
        tuple(sorted(route_configs, key=lambda x: x.name)),
        tuple(sorted(clusters, key=lambda x: x.name)),
    )


def _inbound_ports(snapshot: Snapshot, view: ProxyView) -> list[ServicePort]:
    """Ports the local app serves, from the services that select this proxy."""
    seen: dict[int, ServicePort] = {}
    for svc in snapshot.registry.services_selecting(view.namespace, view.label_map):
        for sp in svc.ports:
            target = sp.target_port if isinstance(sp.target_port, int) else sp.port
            seen.setdefault(target, ServicePort(sp.name, target, sp.protocol, target))
    return [seen[p] for p in sorted(seen)]


def _inbound_chain(
    sp: ServicePort,
    name: str,
    access_log: bool = False,
    *,
    snapshot: Snapshot | None = None,
    view: ProxyView | None = None,
) -> FilterChain:
    cluster = inbound_cluster(sp.port)
    if sp.is_http:
        routes = RouteConfig(
            cluster,
            (
                VirtualHost(
                    f"inbound|http|{sp.port}",
                    ("*",),
                    (
                        Route(
                            "default",
                            RouteMatch(),
                            ForwardAction((WeightedCluster(cluster, 100),), timeout_ms=0),
                        ),
                    ),
                ),
            ),
        )
        hcm = HttpConnectionManager(
            cluster, inline_routes=routes, direction="inbound", access_log=access_log
        )
        if snapshot is not None and view is not None:
            # JWT and authorization of the workload, for requests to this port.
            hcm = with_workload_security(hcm, snapshot, view.namespace, view.label_map, sp.port)
        flt: HttpConnectionManager | TcpProxy = hcm
    else:
        flt = TcpProxy(cluster, cluster)
        if snapshot is not None and view is not None:
            # Authorization of the workload, for connections to this port.
            flt = with_tcp_workload_authz(flt, snapshot, view.namespace, view.label_map, sp.port)
    return FilterChain(name, flt, FilterChainMatch(destination_port=sp.port))


def sidecar_inbound(snapshot: Snapshot, view: ProxyView) -> InboundParts:
    """Inbound listeners and clusters to the local app."""
    ports = _inbound_ports(snapshot, view)
    clusters = [
        inbound_cluster_ir(sp.port, view.app_address, view.app_port(sp.port), sp.is_http2)
        for sp in ports
    ]
    listeners: list[Listener] = []
    # Mesh mTLS on the inbound side (PeerAuthentication) needs the proxy's own
    # certificate; proxies without one keep plaintext inbound.
    mtls = peer_mtls(snapshot, view.namespace, view.label_map) if view.workload_certs else None
    if view.interception == "REDIRECT":
        chains = tuple(
            _inbound_chain(
                sp, inbound_cluster(sp.port), snapshot.access_log, snapshot=snapshot, view=view
            )
            for sp in ports
        )
        passthrough = FilterChain(
            INBOUND_PASSTHROUGH_CLUSTER,
            TcpProxy(INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER),
        )
        if mtls is not None:
            extra, passthrough = inbound_passthrough_chains(mtls.mode)
            chains = (
                *(
                    secured
                    for sp, chain in zip(ports, chains, strict=True)
                    for secured in inbound_mtls_chains(
                        chain, mtls.for_port(sp.port), reject_plaintext=True
                    )
                ),
                *extra,
            )
        listeners.append(
            Listener(
                VIRTUAL_INBOUND,
                "0.0.0.0",
                view.inbound_port,
                chains,
                passthrough,
                use_original_dst=True,
                direction="inbound",
                inspect_tls=any(c.tls is not None for c in chains),
            )
        )
        clusters.append(
            Cluster(
                INBOUND_PASSTHROUGH_CLUSTER, "ORIGINAL_DST", "CLUSTER_PROVIDED", direction="inbound"
            )
        )
    else:
        for sp in ports:
            name = f"{view.bind_ip}_{sp.port}"
            chain = _inbound_chain(
                sp, inbound_cluster(sp.port), snapshot.access_log, snapshot=snapshot, view=view
            )
            mode = mtls.for_port(sp.port) if mtls is not None else "DISABLE"
            if mode != "DISABLE":
                # The listener serves one port: chains match only TLS or not.
                secured = inbound_mtls_chains(
                    FilterChain(chain.name, chain.filter), mode, reject_plaintext=False
                )
                listeners.append(
                    Listener(
                        name,
                        view.bind_ip,
                        sp.port,
                        secured,
                        direction="inbound",
                        inspect_tls=True,
                    )
                )
                continue
            listeners.append(
                Listener(
                    name,
                    view.bind_ip,
                    sp.port,
                    (),
                    FilterChain(chain.name, chain.filter),
                    direction="inbound",
                )
            )
    return InboundParts(
        tuple(sorted(listeners, key=lambda x: x.name)),
        tuple(sorted(clusters, key=lambda x: x.name)),
    )
