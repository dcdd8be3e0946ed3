"""Plain TCP Gateway servers: a listener per port that proxies to VirtualService ``tcp`` routes.

A ``TCP`` server (no TLS) on a gateway port becomes listener
``0.0.0.0_<port>`` with one filter chain: the first VirtualService bound to
one of the port's Gateways whose ``tcp`` rule applies to the port (a match
without ``port``, or with this one) decides it, split by weight as for
sidecars (``l4_routes``). VirtualServices are taken in namespace/name order,
as elsewhere. A port no rule covers gets no listener (Istio's gateway has
nothing to send it to either). ``tcp_chain`` is the same choice as one filter
chain, which ``translate.gateway`` also puts behind TLS it terminates.
"""

from __future__ import annotations

from dataclasses import replace

from pilotfish.api.networking.gateway import Server
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.ir import FilterChain, Listener
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.l4_routes import tcp_proxy_for
from pilotfish.translate.security.authz import authz_policies
from pilotfish.translate.virtual_hosts import bound_gateways

__all__ = ["tcp_chain", "tcp_listener"]


def tcp_chain(
    snapshot: Snapshot, view: ProxyView, port: int, keys: set[str], name: str
) -> FilterChain | None:
    """The chain proxying ``port`` of the Gateways ``keys`` (``ns/name``) to the first
    VirtualService ``tcp`` rule that applies, or None. Also used behind TLS the
    gateway terminates (a ``TLS`` server in a terminating mode)."""
    for vs in snapshot.of_kind("VirtualService"):
        spec = vs.spec
        assert isinstance(spec, VirtualServiceSpec)
        if not spec.tcp or not keys & bound_gateways(vs):
            continue
        for rule in spec.tcp:
            if rule.match and not any(m.port in (None, port) for m in rule.match):
                continue
            proxy = tcp_proxy_for(snapshot, name, rule.route, vs, port)
            authz = authz_policies(snapshot, view.namespace, view.label_map, port, tcp=True)
            return FilterChain(name, replace(proxy, authz=authz))
    return None


def tcp_listener(
    snapshot: Snapshot, view: ProxyView, port: int, servers: list[tuple[str, Server]]
) -> Listener | None:
    name = f"0.0.0.0_{port}"
    chain = tcp_chain(snapshot, view, port, {key for key, _ in servers}, name)
    if chain is None:
        return None
    return Listener(name, view.bind_ip, view.app_port(port), (), chain, direction="gateway")
