"""421 Misdirected Request for hosts a TLS filter chain's server does not serve.

Theory of operation: a gateway port with several terminating servers picks a
filter chain, and so a route configuration, by the SNI of the connection.
An HTTP/2 client may reuse that connection for any host the certificate
covers (RFC 9113, section 9.1.1), so a request can arrive on a chain whose
server does not serve its ``:authority``. Such a request must not be routed
by another server's rules, nor get a 404 that says the host has no routes:
the server answers 421, which tells the client to open a connection for that
host (RFC 9110, section 15.5.20; Gateway API's
GatewayHTTPSListenerDetectMisdirectedRequests).

Each chain's route configuration therefore gains, after its own virtual
hosts:

- a 421 virtual host for each SNI name of the port's other chains that the
  chain's own names cover (its names, or any name when it has none): the
  more specific server on the port owns that host (``fourth.example.org``
  under a ``*.example.org`` server). Envoy prefers an exact domain over a
  wildcard and a longer wildcard over a shorter one, so these win over the
  chain's own wildcard hosts;
- when the chain has names of its own, a catch-all ``*`` answering 421:
  every other host belongs to another server or to none that this
  connection may reach.

A chain without names (the server whose hosts include ``*``) has no
catch-all: a host no server names is its own, and unknown, so 404.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from pilotfish.ir import (
    DirectResponseAction,
    FilterChain,
    HttpConnectionManager,
    Route,
    RouteConfig,
    RouteMatch,
    VirtualHost,
)
from pilotfish.translate.virtual_hosts import dedupe_domains, host_matches

__all__ = ["MISDIRECTED", "with_misdirected_hosts"]

MISDIRECTED = 421


def _names(chain: FilterChain) -> tuple[str, ...]:
    return chain.match.server_names if chain.match is not None else ()


def _covers(names: Iterable[str], host: str) -> bool:
    return any(host_matches(name, host) for name in names)


def _misdirected_vhost(name: str, domains: tuple[str, ...]) -> VirtualHost:
    route = Route(f"misdirected:{name}", RouteMatch(), DirectResponseAction(MISDIRECTED))
    return VirtualHost(f"misdirected:{name}", domains, (route,))


def with_misdirected_hosts(
    chains: list[FilterChain],
    route_configs: list[RouteConfig],
    domains_of: Callable[[str], list[str]],
) -> list[RouteConfig]:
    """``route_configs`` with the 421 virtual hosts of the SNI-selected terminating
    ``chains`` of one port (see the module docstring); ``domains_of`` gives a host's
    virtual host domains (with ports, as the chain's own hosts have them)."""
    if len(chains) < 2:
        return route_configs  # one chain serves every SNI: nothing is misdirected
    by_name = {rc.name: rc for rc in route_configs}
    for chain in chains:
        hcm = chain.filter
        if chain.tls is None or not isinstance(hcm, HttpConnectionManager):
            continue
        config = by_name.get(hcm.route_config_name or "")
        if config is None:
            continue
        own = _names(chain)
        taken = {d for vh in config.virtual_hosts for d in vh.domains}
        added: list[VirtualHost] = []
        others = sorted({n for other in chains if other is not chain for n in _names(other)})
        for name in others:
            if name in own or (own and not _covers(own, name)):
                continue
            left = dedupe_domains(domains_of(name), taken)
            if left:
                added.append(_misdirected_vhost(name, left))
        if own and (left := dedupe_domains(["*"], taken)):
            added.append(_misdirected_vhost("*", left))
        if added:
            by_name[config.name] = replace(config, virtual_hosts=(*config.virtual_hosts, *added))
    return [by_name[rc.name] for rc in route_configs]
