"""Sidecar configuration: outbound routing to mesh services, inbound to the local app.

Theory of operation. Outbound listeners and routes (``outbound_part``) are a
function of an ``OutboundKey`` alone (namespace, listener layout, the labels
VirtualService ``sourceLabels`` matches name, the applied Sidecar), so all
sidecars of a namespace share one translation; outbound clusters are a
separate part (``scoped_outbound_clusters``, by ``ClusterKey``). Inbound config
depends on the whole view: its labels (which services select it) and app ports.

Two layouts, by interception mode:

- ``REDIRECT`` (iptables sends traffic to the proxy): ``virtualOutbound`` on
  15001 hands each connection, by its original destination, to a per-port
  listener that does not bind (``0.0.0.0_9080``); on HTTP ports where a
  Gateway API mesh route applies, a connection to a Kubernetes Service's
  cluster IP gets that Service's routes (RDS ``"<host>:9080"``, any Host);
  any other destination routes by Host through RDS ``"9080"``; TCP ports
  match the service VIP. ``virtualInbound`` on 15006 picks a filter chain by
  destination port.
- ``NONE`` (apps dial the proxy): one HTTP proxy listener on
  ``bind_ip:outbound_port`` serving every HTTP service by ``host:port`` through
  RDS ``"http_proxy"``; inbound listeners bind ``bind_ip:<port>`` and forward to
  the app.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from pilotfish.api.resource import Resource
from pilotfish.ir import (
    Cluster,
    DirectResponseAction,
    FilterChain,
    FilterChainMatch,
    ForwardAction,
    HttpConnectionManager,
    Listener,
    RetryPolicy,
    Route,
    RouteConfig,
    RouteMatch,
    RoutePolicy,
    TcpProxy,
    VirtualHost,
    WeightedCluster,
)
from pilotfish.model.proxy_view import ClusterKey, OutboundKey, ProxyView
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import MeshService, ServicePort
from pilotfish.translate.clusters import fixed_clusters, inbound_cluster_ir, outbound_clusters
from pilotfish.translate.http_routes import RouteContext, default_route, http_routes
from pilotfish.translate.l4_routes import L4Client, service_l4_chains
from pilotfish.translate.names import (
    BLACKHOLE_CLUSTER,
    HTTP_PROXY_ROUTE,
    INBOUND_PASSTHROUGH_CLUSTER,
    INBOUND_PASSTHROUGH_SOURCE,
    PASSTHROUGH_CLUSTER,
    VIRTUAL_INBOUND,
    VIRTUAL_OUTBOUND,
    inbound_cluster,
)
from pilotfish.translate.route_filters import with_route_filters
from pilotfish.translate.route_semantics import gateway_semantics
from pilotfish.translate.security.http_filters import with_workload_security
from pilotfish.translate.security.mtls import inbound_mtls_chains, inbound_passthrough_chains
from pilotfish.translate.security.peer_authn import peer_mtls
from pilotfish.translate.security.route_policy import with_route_policies
from pilotfish.translate.security.tcp_filters import with_tcp_workload_authz
from pilotfish.translate.sidecar_scope import SidecarScope, scope_for, sidecar_scope
from pilotfish.translate.source_match import source_label_keys
from pilotfish.translate.telemetry import apply_telemetry, workload_telemetry
from pilotfish.translate.telemetry import resolve as resolve_telemetry
from pilotfish.translate.telemetry_metrics import with_metrics
from pilotfish.translate.virtual_hosts import dedupe_domains, service_domains, vs_for_mesh
from pilotfish.translate.visibility import service_visible
from pilotfish.xds.build.http_filters import with_http_filters

__all__ = [
    "InboundParts",
    "OutboundParts",
    "outbound_part",
    "scoped_outbound_clusters",
    "sidecar_inbound",
    "sidecar_outbound",
]


@dataclass(frozen=True)
class OutboundParts:
    listeners: tuple[Listener, ...]
    route_configs: tuple[RouteConfig, ...]
    # Empty from ``outbound_part`` (clusters are their own part).
    clusters: tuple[Cluster, ...] = ()


@dataclass(frozen=True)
class InboundParts:
    listeners: tuple[Listener, ...]
    clusters: tuple[Cluster, ...]
    route_configs: tuple[RouteConfig, ...] = ()


def _http_ports(
    snapshot: Snapshot, namespace: str
) -> dict[int, list[tuple[MeshService, ServicePort]]]:
    """Service ports by port number, of the services exported to ``namespace``."""
    by_port: dict[int, list[tuple[MeshService, ServicePort]]] = defaultdict(list)
    for svc in snapshot.registry.services.values():
        if not service_visible(svc, namespace):
            continue
        for sp in svc.ports:
            by_port[sp.port].append((svc, sp))
    return by_port


def _vhost(
    svc: MeshService,
    port: int,
    key: OutboundKey,
    snapshot: Snapshot,
    vs_by_host: dict[str, object],
    taken: set[str],
    *,
    with_bare: bool,
) -> VirtualHost | None:
    domains = dedupe_domains(
        service_domains(svc, port, key.namespace, snapshot.domain_suffix, with_bare=with_bare),
        taken,
    )
    if not domains:
        return None
    ctx = RouteContext(snapshot, key.namespace, port, proxy_labels=key.source_labels)
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


def _block_all_vhost() -> VirtualHost:
    """REGISTRY_ONLY: a host outside the registry gets 502, as in Istio."""
    return VirtualHost(
        "block_all", ("*",), (Route("block_all", RouteMatch(), DirectResponseAction(502)),)
    )


def _unknown_tcp_chain(scope: SidecarScope) -> FilterChain:
    """Where TCP to an unknown destination goes: passthrough, or nowhere (REGISTRY_ONLY)."""
    target = BLACKHOLE_CLUSTER if scope.outbound_policy == "REGISTRY_ONLY" else PASSTHROUGH_CLUSTER
    return FilterChain(target, TcpProxy(target, target))


def sidecar_outbound(
    snapshot: Snapshot, view: ProxyView, scope: SidecarScope | None = None
) -> OutboundParts:
    """Outbound listeners, routes and clusters of a sidecar ``view`` (a convenience
    over ``outbound_part`` and ``scoped_outbound_clusters`` with the view's keys)."""
    sidecar = (scope or sidecar_scope(snapshot, view)).key
    telemetry = workload_telemetry(snapshot, view.namespace, view.label_map)
    key = view.outbound_key(source_label_keys(snapshot), sidecar, telemetry)
    parts = outbound_part(snapshot, key)
    clusters = scoped_outbound_clusters(snapshot, view.cluster_key(sidecar))
    return OutboundParts(parts.listeners, parts.route_configs, clusters)


def scoped_outbound_clusters(snapshot: Snapshot, key: ClusterKey) -> tuple[Cluster, ...]:
    """Outbound clusters of the services the applied Sidecar leaves visible, plus the
    fixed ones, sorted by name."""
    scope = scope_for(snapshot, key.namespace, key.sidecar)
    built = outbound_clusters(
        snapshot,
        key.namespace,
        workload_certs=key.workload_certs,
        backend_client_cert=key.backend_client_cert,
    )
    clusters = scope.filter_clusters(snapshot, built)
    return tuple(sorted(clusters + fixed_clusters(), key=lambda c: c.name))


@dataclass(frozen=True)
class _OutboundInputs:
    snapshot: Snapshot
    key: OutboundKey
    scope: SidecarScope
    vs_by_host: dict[str, object]
    by_port: dict[int, list[tuple[MeshService, ServicePort]]]
    unknown_vhost: VirtualHost


def _captured_outbound(
    inputs: _OutboundInputs, listeners: list[Listener], route_configs: list[RouteConfig]
) -> None:
    """REDIRECT: per-port listeners behind ``virtualOutbound`` (see the module docstring)."""
    snapshot, key, scope = inputs.snapshot, inputs.key, inputs.scope
    vs_by_host, by_port, unknown_vhost = inputs.vs_by_host, inputs.by_port, inputs.unknown_vhost
    for port in sorted(by_port):
        http = [(s, sp) for s, sp in by_port[port] if sp.is_http]
        tcp = [(s, sp) for s, sp in by_port[port] if not sp.is_http]
        chains: list[FilterChain] = []
        claimed: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
        client = L4Client(key.namespace, dict(key.source_labels))
        for svc, _sp in tcp:
            # VIP chains (refined by VirtualService tcp/tls routes, see l4_routes).
            vs = vs_by_host.get(svc.hostname)
            owner = vs if isinstance(vs, Resource) else None
            chains += service_l4_chains(snapshot, svc, port, owner, client, claimed)
        default: FilterChain | None = None
        if http:
            vip_chains, vip_routes = _http_vip_chains(inputs, port, http, claimed)
            chains += vip_chains
            route_configs += vip_routes
            taken: set[str] = set()
            vhosts = [
                vh
                for svc, _sp in http
                if (vh := _vhost(svc, port, key, snapshot, vs_by_host, taken, with_bare=True))
            ]
            vhosts.append(unknown_vhost)
            route_configs.append(RouteConfig(str(port), tuple(vhosts)))
            default = FilterChain(
                f"0.0.0.0_{port}",
                with_metrics(
                    HttpConnectionManager(f"outbound_0.0.0.0_{port}", route_config_name=str(port)),
                    "source",
                ),
            )
        else:
            default = _unknown_tcp_chain(scope)
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
            key.outbound_port,
            (),
            _unknown_tcp_chain(scope),
            use_original_dst=True,
            direction="outbound",
        )
    )


def _vip_range(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def _gamma_routed(vs: object) -> bool:
    return isinstance(vs, Resource) and gateway_semantics(vs)


def _http_vip_chains(
    inputs: _OutboundInputs,
    port: int,
    http: list[tuple[MeshService, ServicePort]],
    claimed: set[tuple[tuple[str, ...], tuple[str, ...]]],
) -> tuple[list[FilterChain], list[RouteConfig]]:
    """REDIRECT: a chain per Kubernetes Service of ``port`` matching its cluster IPs,
    whose route configuration ``<host>:<port>`` serves that Service's routes for
    any Host.

    A cluster IP is allocated to one Service: the app chose the Service by the
    address it connected to, so its routes apply whatever Host the request names
    (Gateway API's MeshClusterIPMatching). A ServiceEntry's addresses are not
    such a choice (often a real server's, reachable under other names, or shared
    by its hosts): there, as at any destination that is no cluster IP, the Host
    header picks the routes (RDS ``<port>``), as in Istio, so a REGISTRY_ONLY
    mesh still refuses an unknown host sent to a known address.

    Only on a port where a Gateway API mesh route applies to one of its
    Services: each chain carries a whole HTTP connection manager (about 15 KB
    of listener configuration per Service port on every sidecar), and
    VirtualService routing is Host-based, as in Istio, so a mesh of
    VirtualServices pays nothing for it."""
    if not any(_gamma_routed(inputs.vs_by_host.get(svc.hostname)) for svc, _sp in http):
        return [], []
    services = [(svc, sp) for svc, sp in http if svc.source_kind == "Service"]
    owners: dict[str, list[MeshService]] = defaultdict(list)
    for svc, _sp in services:
        for address in svc.addresses:
            owners[address].append(svc)
    chains: list[FilterChain] = []
    routes: list[RouteConfig] = []
    for svc, _sp in services:
        vips = tuple(_vip_range(a) for a in svc.addresses if len(owners[a]) == 1)
        if not vips or (vips, ()) in claimed:
            continue
        vh = _vhost(
            svc, port, inputs.key, inputs.snapshot, inputs.vs_by_host, set(), with_bare=True
        )
        if vh is None:
            continue
        claimed.add((vips, ()))
        name = f"{svc.hostname}:{port}"
        routes.append(RouteConfig(name, (replace(vh, domains=("*",)),)))
        hcm = HttpConnectionManager(f"outbound_0.0.0.0_{port}", route_config_name=name)
        chains.append(
            FilterChain(name, with_metrics(hcm, "source"), FilterChainMatch(prefix_ranges=vips))
        )
    return chains, routes


def _explicit_outbound(
    inputs: _OutboundInputs, listeners: list[Listener], route_configs: list[RouteConfig]
) -> None:
    """NONE: one HTTP proxy listener on ``bind_ip:outbound_port``."""
    snapshot, key, scope = inputs.snapshot, inputs.key, inputs.scope
    vs_by_host, by_port, unknown_vhost = inputs.vs_by_host, inputs.by_port, inputs.unknown_vhost
    taken: set[str] = set()
    vhosts: list[VirtualHost] = []
    for port in sorted(by_port):
        for svc, sp in by_port[port]:
            if not sp.is_http:
                continue
            vh = _vhost(svc, port, key, snapshot, vs_by_host, taken, with_bare=False)
            if vh is not None:
                vhosts.append(vh)
    if scope.outbound_policy == "REGISTRY_ONLY":
        # An explicit HTTP proxy cannot pass an unknown host through (that would
        # need a dynamic forward proxy): ALLOW_ANY keeps Envoy's 404, and
        # REGISTRY_ONLY answers 502 like the captured layout.
        vhosts.append(unknown_vhost)
    route_configs.append(RouteConfig(HTTP_PROXY_ROUTE, tuple(vhosts)))
    name = f"{key.bind_ip}_{key.outbound_port}"
    listeners.append(
        Listener(
            name,
            key.bind_ip,
            key.outbound_port,
            (),
            FilterChain(
                name,
                with_metrics(
                    HttpConnectionManager(f"outbound_{name}", route_config_name=HTTP_PROXY_ROUTE),
                    key.reporter,
                ),
            ),
            direction="outbound",
        )
    )


def outbound_part(snapshot: Snapshot, key: OutboundKey) -> OutboundParts:
    """Outbound listeners and route configurations (no clusters), from ``key`` alone."""
    scope = scope_for(snapshot, key.namespace, key.sidecar)
    vs_by_host: dict[str, object] = dict(vs_for_mesh(snapshot, key.namespace))
    by_port = {
        port: visible
        for port, entries in _http_ports(snapshot, key.namespace).items()
        if (visible := [(s, sp) for s, sp in entries if scope.visible(s, port)])
    }
    unknown_vhost = (
        _block_all_vhost() if scope.outbound_policy == "REGISTRY_ONLY" else _passthrough_vhost()
    )
    listeners: list[Listener] = []
    route_configs: list[RouteConfig] = []
    layout = _captured_outbound if key.interception == "REDIRECT" else _explicit_outbound
    layout(
        _OutboundInputs(snapshot, key, scope, vs_by_host, by_port, unknown_vhost),
        listeners,
        route_configs,
    )
    # Fault injection and CORS need their filters on the connection managers.
    listeners = list(with_route_filters(listeners, route_configs))
    # Metrics, tracing and access logs of the client side (the key names the
    # Telemetry selecting the workload).
    client = resolve_telemetry(snapshot, key.namespace, key.telemetry, "client")
    listeners = list(apply_telemetry(listeners, client, client))
    return OutboundParts(
        tuple(sorted(listeners, key=lambda x: x.name)),
        tuple(sorted(route_configs, key=lambda x: x.name)),
    )


def _inbound_ports(
    snapshot: Snapshot, view: ProxyView, scope: SidecarScope
) -> tuple[list[ServicePort], dict[int, tuple[str, int]]]:
    """Ports the local app serves, and where each forwards (``(address, port)``).

    A Sidecar's ``ingress`` declares them; otherwise the services that select
    this proxy do, and each forwards to the proxy's app address and app port.
    """
    if scope.ingress is not None:
        declared = [ServicePort(i.name, i.port, i.protocol, i.port) for i in scope.ingress]
        where = {
            i.port: (
                i.endpoint_address or view.app_address,
                i.endpoint_port if i.endpoint_port is not None else view.app_port(i.port),
            )
            for i in scope.ingress
        }
        return declared, where
    seen: dict[int, ServicePort] = {}
    for svc in snapshot.registry.services_selecting(view.namespace, view.label_map):
        for sp in svc.ports:
            target = sp.target_port if isinstance(sp.target_port, int) else sp.port
            seen.setdefault(target, ServicePort(sp.name, target, sp.protocol, target))
    ports = [seen[p] for p in sorted(seen)]
    return ports, {p.port: (view.app_address, view.app_port(p.port)) for p in ports}


#: Istio's default for inbound routes: a request reset before it reached the
#: application was never processed, so retrying it is safe for any method. It
#: covers the race of an app closing an idle keep-alive connection while the
#: sidecar sends on it, which the caller would otherwise see as a 503 (UC).
INBOUND_RETRY = RetryPolicy(attempts=2, retry_on="reset-before-request", avoid_previous_hosts=False)


def _inbound_chain(
    sp: ServicePort,
    name: str,
    *,
    snapshot: Snapshot | None = None,
    view: ProxyView | None = None,
    route_configs: list[RouteConfig] | None = None,
) -> FilterChain:
    """The chain of one inbound port. An HTTP port's routes go over RDS (named
    as its cluster, as in Istio) and are added to ``route_configs``: a policy
    change of the workload is then a route change, which reaches connections
    already open (``translate/security/route_policy.py``)."""
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
                            ForwardAction(
                                (WeightedCluster(cluster, 100),), timeout_ms=0, retry=INBOUND_RETRY
                            ),
                        ),
                    ),
                ),
            ),
        )
        # Its filters from the start: the peer headers come off every inbound request.
        hcm = with_http_filters(
            with_metrics(
                HttpConnectionManager(cluster, route_config_name=cluster, direction="inbound"),
                "destination",
            )
        )
        if snapshot is not None and view is not None:
            # JWT and authorization of the workload, for requests to this port.
            hcm = with_workload_security(hcm, snapshot, view.namespace, view.label_map, sp.port)
        if route_configs is not None:
            route_configs.append(routes)
        flt: HttpConnectionManager | TcpProxy = hcm
    else:
        flt = with_metrics(TcpProxy(cluster, cluster), "destination")
        if snapshot is not None and view is not None:
            # Authorization of the workload, for connections to this port.
            flt = with_tcp_workload_authz(flt, snapshot, view.namespace, view.label_map, sp.port)
    return FilterChain(name, flt, FilterChainMatch(destination_port=sp.port))


def sidecar_inbound(snapshot: Snapshot, view: ProxyView) -> InboundParts:
    """Inbound listeners and clusters to the local app."""
    ports, where = _inbound_ports(snapshot, view, sidecar_scope(snapshot, view))
    clusters = [inbound_cluster_ir(sp.port, *where[sp.port], sp.is_http2) for sp in ports]
    listeners: list[Listener] = []
    routes: list[RouteConfig] = []
    # Mesh mTLS on the inbound side (PeerAuthentication) needs the proxy's own
    # certificate; proxies without one keep plaintext inbound.
    mtls = peer_mtls(snapshot, view.namespace, view.label_map) if view.workload_certs else None
    strict = {
        inbound_cluster(sp.port)
        for sp in ports
        if mtls is not None and mtls.for_port(sp.port) == "STRICT"
    }
    if view.interception == "REDIRECT":
        chains = tuple(
            _inbound_chain(
                sp, inbound_cluster(sp.port), snapshot=snapshot, view=view, route_configs=routes
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
                INBOUND_PASSTHROUGH_CLUSTER,
                "ORIGINAL_DST",
                "CLUSTER_PROVIDED",
                direction="inbound",
                source_address=INBOUND_PASSTHROUGH_SOURCE,
            )
        )
    else:
        for sp in ports:
            name = f"{view.bind_ip}_{sp.port}"
            chain = _inbound_chain(
                sp, inbound_cluster(sp.port), snapshot=snapshot, view=view, route_configs=routes
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
        tuple(sorted(_strict_routes(with_route_policies(listeners, routes), strict), key=_name)),
    )


def _name(config: RouteConfig) -> str:
    return config.name


def _strict_routes(configs: Iterable[RouteConfig], strict: set[str]) -> list[RouteConfig]:
    """``configs`` with the virtual hosts of the ``strict`` ones (route names of
    PeerAuthentication STRICT ports) denying requests without a client
    certificate (``ir.RoutePolicy.require_mtls``)."""
    out: list[RouteConfig] = []
    for config in configs:
        if config.name not in strict:
            out.append(config)
            continue
        vhosts = tuple(
            replace(vh, policy=replace(vh.policy or RoutePolicy(), require_mtls=True))
            for vh in config.virtual_hosts
        )
        out.append(replace(config, virtual_hosts=vhosts))
    return out
