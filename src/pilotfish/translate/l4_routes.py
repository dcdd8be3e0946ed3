"""VirtualService ``tcp`` and ``tls`` routes -> sidecar outbound filter chains.

Theory of operation: under ``REDIRECT`` interception a non-HTTP service port
is a listener ``0.0.0.0_<port>`` whose filter chains are picked by the
connection's original destination. By default a service has one chain
matching its VIPs that proxies to the service's cluster. A VirtualService
covering the service refines that:

- ``tcp`` rules, in order: each applicable match (``port``, ``sourceLabels``,
  ``sourceNamespace``; ``gateways`` must include ``mesh`` when given) becomes
  a chain matching its ``destinationSubnets`` (else the service VIPs) that
  proxies to the rule's destinations, split by weight
  (``tcp_proxy.weighted_clusters``). The first rule claiming a destination
  range wins, as Envoy requires distinct chain matches.
- ``tls`` rules (TLS/HTTPS service ports): each applicable match becomes a
  chain matching the same destination range *and* the client's SNI
  (``sniHosts``), read by ``tls_inspector``. Envoy picks chains by
  destination address before SNI, so the SNI chains carry the VIPs too, and
  the plain VIP chain stays as the fallback for other or missing SNI.

Matches that name a client (``sourceLabels``, ``sourceNamespace``) are
decided at translation time (see ``translate.source_match``). Under ``NONE``
interception there is no outbound TCP listener at all (apps dial the HTTP
proxy), so these routes do not apply there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilotfish.api.networking.virtual_service import (
    L4MatchAttributes,
    RouteDestination,
    TLSMatchAttributes,
)
from pilotfish.api.resource import Resource
from pilotfish.ir import FilterChain, FilterChainMatch, TcpProxy
from pilotfish.model.hosts import fqdn
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import MeshService
from pilotfish.translate.names import outbound_cluster
from pilotfish.translate.source_match import source_matches
from pilotfish.translate.telemetry_metrics import with_metrics
from pilotfish.translate.virtual_hosts import bound_gateways

__all__ = ["TLS_PROTOCOLS", "L4Client", "service_l4_chains"]

TLS_PROTOCOLS = frozenset({"TLS", "HTTPS"})

# (prefix ranges, server names) already claimed on one listener.
_ChainKey = tuple[tuple[str, ...], tuple[str, ...]]


class L4Client:
    """The client proxy facts L4 matches read: its namespace and labels."""

    __slots__ = ("labels", "namespace")

    def __init__(self, namespace: str, labels: Mapping[str, str]) -> None:
        self.namespace = namespace
        self.labels = dict(labels)


def _applies(
    m: L4MatchAttributes | TLSMatchAttributes, port: int, vs: Resource, client: L4Client
) -> bool:
    if m.port is not None and m.port != port:
        return False
    if m.gateways:
        names = {g if g == "mesh" or "/" in g else f"{vs.namespace}/{g}" for g in m.gateways}
        if "mesh" not in names:
            return False
    elif "mesh" not in bound_gateways(vs):
        return False
    return source_matches(m.source_labels, m.source_namespace, client.labels, client.namespace)


def _dest_cluster(snapshot: Snapshot, d: RouteDestination, vs: Resource, port: int) -> str:
    hostname = fqdn(d.destination.host, vs.namespace, snapshot.domain_suffix)
    number = d.destination.port.number if d.destination.port is not None else None
    if not number:
        svc = snapshot.registry.service(hostname)
        number = port
        if svc is not None and svc.port(port) is None and svc.ports:
            number = svc.ports[0].port
    return outbound_cluster(hostname, number, d.destination.subset or "")


def tcp_proxy_for(
    snapshot: Snapshot, stat: str, routes: Sequence[RouteDestination], vs: Resource, port: int
) -> TcpProxy:
    """The TCP proxy of one ``tcp``/``tls`` rule's destinations (also for gateways)."""
    positive = [d for d in routes if d.weight is None or d.weight > 0] or list(routes)
    pairs = [(_dest_cluster(snapshot, d, vs, port), d.weight or 0) for d in positive]
    if len(pairs) == 1:
        return with_metrics(TcpProxy(pairs[0][0], pairs[0][0]), "source")
    if all(w == 0 for _, w in pairs):
        pairs = [(c, 1) for c, _ in pairs]
    return with_metrics(TcpProxy(stat, pairs[0][0], weighted_clusters=tuple(pairs)), "source")


def _server_names(snis: Sequence[str]) -> tuple[str, ...]:
    # "*" means any SNI, which is a chain without a server-name match.
    return tuple(sorted({s.lower() for s in snis if s != "*"}))


def service_l4_chains(
    snapshot: Snapshot,
    svc: MeshService,
    port: int,
    vs: Resource | None,
    client: L4Client,
    taken: set[_ChainKey],
) -> list[FilterChain]:
    """The outbound chains of one TCP/TLS service port (REDIRECT layout), in
    priority order, ending with the default VIP chain to the service.

    ``taken`` holds the chain matches already used on this listener; chains
    whose match is taken are left out and the set is updated."""
    vips = tuple(f"{a}/32" for a in svc.addresses)
    base = f"{svc.hostname}:{port}"
    sp = svc.port(port)
    chains: list[FilterChain] = []

    def add(name: str, key: _ChainKey, proxy: TcpProxy) -> None:
        if not key[0] or key in taken:
            return
        taken.add(key)
        match = FilterChainMatch(prefix_ranges=key[0], server_names=key[1])
        chains.append(FilterChain(name, proxy, match))

    spec = vs.spec if vs is not None else None
    if vs is not None and sp is not None and sp.protocol in TLS_PROTOCOLS:
        for ri, tls_rule in enumerate(getattr(spec, "tls", ())):
            if not tls_rule.route:
                continue
            for mi, tm in enumerate(tls_rule.match):
                if not _applies(tm, port, vs, client):
                    continue
                ranges = tuple(tm.destination_subnets) or vips
                name = f"{base}/tls/{ri}/{mi}"
                proxy = tcp_proxy_for(snapshot, name, tls_rule.route, vs, port)
                add(name, (ranges, _server_names(tm.sni_hosts)), proxy)
    if vs is not None:
        for ri, tcp_rule in enumerate(getattr(spec, "tcp", ())):
            if not tcp_rule.route:
                continue
            matches: list[L4MatchAttributes | None] = list(tcp_rule.match) or [None]
            for mi, lm in enumerate(matches):
                if lm is not None and not _applies(lm, port, vs, client):
                    continue
                subnets = tuple(lm.destination_subnets) if lm is not None else ()
                ranges = subnets or vips
                name = base if not subnets else f"{base}/tcp/{ri}/{mi}"
                add(name, (ranges, ()), tcp_proxy_for(snapshot, name, tcp_rule.route, vs, port))
    cluster = outbound_cluster(svc.hostname, port)
    add(base, (vips, ()), with_metrics(TcpProxy(cluster, cluster), "source"))
    return chains
