"""Which Sidecar resource applies to a proxy, and what it lets the proxy see.

Theory of operation. Istio's precedence, for a sidecar proxy in namespace N
with labels L:

1. a Sidecar in N whose ``workloadSelector`` matches L (the first by name
   when several match: analysis reports the conflict);
2. else the Sidecar in N without a selector (the namespace default);
3. else the Sidecar without a selector in the mesh config's root namespace
   (the mesh default);
4. else none: every service is visible and the mesh config's outbound traffic
   policy applies.

Gateways never get a Sidecar. The result is a ``SidecarScope``; its ``key``
(the applied Sidecar's ``namespace/name``, ``""`` for none) goes into the
``OutboundKey`` and ``ClusterKey`` of the proxy, and ``scope_for`` rebuilds
the scope from just that name and the namespace: proxies of a namespace under
the same Sidecar still share one outbound translation.

Egress hosts are ``namespace/dnsName``. The namespace part is matched
against the namespace of the Service or ServiceEntry that defines a host
(``*`` any, ``.`` the Sidecar's own, ``~`` none); the dnsName is ``*``, a
``*.suffix`` wildcard or a host. Unlike Istio, which wants FQDNs there, a
short name is accepted and resolved relative to the namespace part (``./reviews``
is ``reviews.<sidecar ns>.svc.cluster.local``). An egress listener with a
port scopes that port only; the listener without a port scopes every other
port. The destinations of a VirtualService that routes a visible host stay
reachable (their clusters are kept), as in Istio.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pilotfish.api.networking.sidecar import IstioIngressListener, SidecarSpec
from pilotfish.api.resource import Resource
from pilotfish.ir import Cluster
from pilotfish.model.hosts import fqdn
from pilotfish.model.mesh_config import OutboundMode
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import MeshService, Protocol
from pilotfish.registry.protocol import protocol_of
from pilotfish.translate.virtual_hosts import host_matches, vs_for_mesh

__all__ = [
    "EgressHost",
    "IngressPort",
    "SidecarScope",
    "applied_sidecar",
    "scope_for",
    "sidecar_scope",
]


@dataclass(frozen=True, slots=True)
class EgressHost:
    """One parsed egress host: ``namespace`` is ``*``, ``~`` or a namespace name."""

    namespace: str
    host: str  # an FQDN, ``*`` or ``*.suffix``

    def matches(self, svc: MeshService) -> bool:
        if self.namespace == "~":
            return False
        if self.namespace != "*" and self.namespace != svc.namespace:
            return False
        return host_matches(self.host, svc.hostname)


@dataclass(frozen=True, slots=True)
class IngressPort:
    """An inbound port declared by a Sidecar's ``ingress`` and where it forwards.

    ``endpoint_address``/``endpoint_port`` are None when ``defaultEndpoint`` is
    unset: the proxy's app address and app port are used.
    """

    port: int
    name: str
    protocol: Protocol
    endpoint_address: str | None = None
    endpoint_port: int | None = None


@dataclass(frozen=True, slots=True)
class SidecarScope:
    """What the applied Sidecar (if any) changes for one proxy."""

    key: str = ""  # "namespace/name" of the applied Sidecar, "" for none
    outbound_policy: OutboundMode = "ALLOW_ANY"
    # port (None: catch-all) -> hosts visible on it; None means "no egress scoping".
    egress: tuple[tuple[int | None, tuple[EgressHost, ...]], ...] | None = None
    # None: inbound ports come from the Services that select the proxy.
    ingress: tuple[IngressPort, ...] | None = None
    # Hosts kept reachable because a visible host's VirtualService routes to them.
    extra_hosts: frozenset[str] = field(default_factory=frozenset)

    @property
    def scoped(self) -> bool:
        return self.egress is not None

    def _hosts_for(self, port: int) -> tuple[EgressHost, ...]:
        assert self.egress is not None
        catch_all: tuple[EgressHost, ...] = ()
        for p, hosts in self.egress:
            if p == port:
                return hosts
            if p is None:
                catch_all = hosts
        return catch_all

    def visible(self, svc: MeshService, port: int) -> bool:
        """True when the proxy may route to ``svc`` on ``port`` (listeners, virtual hosts)."""
        if self.egress is None:
            return True
        return any(h.matches(svc) for h in self._hosts_for(port))

    def service_visible(self, svc: MeshService) -> bool:
        """True when ``svc`` is visible on any of its ports, or a routed destination."""
        if self.egress is None or svc.hostname in self.extra_hosts:
            return True
        return any(self.visible(svc, sp.port) for sp in svc.ports)

    def filter_clusters(self, snapshot: Snapshot, clusters: Iterable[Cluster]) -> list[Cluster]:
        """The outbound clusters of visible services (clusters of no service are kept)."""
        if self.egress is None:
            return list(clusters)
        services = snapshot.registry.services
        out = []
        for c in clusters:
            svc = services.get(c.service) if c.service else None
            if svc is None or self.service_visible(svc):
                out.append(c)
        return out


def _selects(spec: SidecarSpec, labels: dict[str, str]) -> bool:
    sel = spec.workload_selector
    assert sel is not None
    return all(labels.get(k) == v for k, v in sel.labels.items())


def applied_sidecar(snapshot: Snapshot, namespace: str, labels: dict[str, str]) -> Resource | None:
    """The Sidecar that applies to a sidecar proxy of ``namespace`` with ``labels``."""
    sidecars = snapshot.of_kind("Sidecar")  # sorted by key: first by name wins
    if not sidecars:
        return None
    default: Resource | None = None
    for res in sidecars:
        if res.namespace != namespace:
            continue
        spec = res.spec
        assert isinstance(spec, SidecarSpec)
        if spec.workload_selector is None:
            default = default or res
        elif _selects(spec, labels):
            return res
    if default is not None:
        return default
    for res in sidecars:
        spec = res.spec
        assert isinstance(spec, SidecarSpec)
        if res.namespace == snapshot.root_namespace and spec.workload_selector is None:
            return res
    return None


def _egress_host(value: str, sidecar_namespace: str, suffix: str) -> EgressHost:
    ns, _, name = value.partition("/")
    if ns == ".":
        ns = sidecar_namespace
    # Short names resolve relative to the namespace part (the Sidecar's own for "*").
    base = sidecar_namespace if ns in ("*", "~") else ns
    return EgressHost(ns, fqdn(name, base, suffix))


def _ingress_ports(listeners: Sequence[IstioIngressListener]) -> tuple[IngressPort, ...]:
    out: list[IngressPort] = []
    for ing in listeners:
        p = ing.port
        address: str | None = None
        port: int | None = None
        if ing.default_endpoint and not ing.default_endpoint.startswith("unix://"):
            host, _, port_text = ing.default_endpoint.rpartition(":")
            # 127.0.0.1 is the loopback of the workload; 0.0.0.0 means the
            # workload's own address (the proxy's app address).
            address = "127.0.0.1" if host in ("127.0.0.1", "[::1]") else None
            port = int(port_text) if port_text.isdigit() else None
        out.append(
            IngressPort(
                p.number, p.name or "", protocol_of(p.name, None, p.protocol), address, port
            )
        )
    return tuple(sorted(out, key=lambda x: x.port))


def _routed_destinations(snapshot: Snapshot, visible: Iterable[str]) -> frozenset[str]:
    """Hosts that the VirtualServices of visible hosts send traffic to."""
    by_host = vs_for_mesh(snapshot)
    out: set[str] = set()
    for hostname in visible:
        vs = by_host.get(hostname)
        if vs is None:
            continue
        for kind in ("http", "tcp", "tls"):
            for rule in getattr(vs.spec, kind, ()) or ():
                for dest in getattr(rule, "route", ()) or ():
                    out.add(fqdn(dest.destination.host, vs.namespace, snapshot.domain_suffix))
    return frozenset(out)


def sidecar_scope(snapshot: Snapshot, view: ProxyView) -> SidecarScope:
    """The scope of ``view``: its applied Sidecar's effect (none for gateways)."""
    if view.role != "sidecar":
        return SidecarScope(outbound_policy=snapshot.outbound_traffic_policy)
    res = applied_sidecar(snapshot, view.namespace, view.label_map)
    return _scope_of(snapshot, view.namespace, res)


def scope_for(snapshot: Snapshot, namespace: str, sidecar: str) -> SidecarScope:
    """The scope of the Sidecar named ``sidecar`` (``namespace/name``, ``""`` for
    none) applied to a proxy of ``namespace``: what ``sidecar_scope`` gives every
    view whose scope has that key (cache keys hold just the name)."""
    res = None
    if sidecar:
        res = next(
            (r for r in snapshot.of_kind("Sidecar") if f"{r.namespace}/{r.name}" == sidecar), None
        )
    return _scope_of(snapshot, namespace, res)


def _scope_of(snapshot: Snapshot, namespace: str, res: Resource | None) -> SidecarScope:
    policy = snapshot.outbound_traffic_policy
    if res is None:
        return SidecarScope(outbound_policy=policy)
    spec = res.spec
    assert isinstance(spec, SidecarSpec)
    if spec.outbound_traffic_policy is not None:
        policy = spec.outbound_traffic_policy.mode
    # A Sidecar of the root namespace applies to proxies of other namespaces:
    # "." in it means the proxy's namespace, as in Istio.
    egress: tuple[tuple[int | None, tuple[EgressHost, ...]], ...] | None = None
    if spec.egress:
        egress = tuple(
            (
                eg.port.number if eg.port is not None else None,
                tuple(_egress_host(h, namespace, snapshot.domain_suffix) for h in eg.hosts),
            )
            for eg in spec.egress
        )
    scope = SidecarScope(
        key=f"{res.namespace}/{res.name}",
        outbound_policy=policy,
        egress=egress,
        ingress=_ingress_ports(spec.ingress) if spec.ingress else None,
    )
    if egress is None:
        return scope
    visible = [h for h, svc in snapshot.registry.services.items() if scope.service_visible(svc)]
    extra = _routed_destinations(snapshot, visible)
    if not extra:
        return scope
    return SidecarScope(scope.key, scope.outbound_policy, egress, scope.ingress, extra)
