"""Copy each connection manager's workload policy onto the routes it serves.

Theory of operation: a connection manager that enforces its workload's JWT
and authorization policies per route (``HttpConnectionManager.policy_per_route``,
set by ``with_workload_security``) keeps fixed security filters, and the
policy itself travels with its RDS route configuration, on every virtual
host (``ir.RoutePolicy``, built by ``pilotfish.xds.build.route_policy``). A
policy change is then a route change, which Envoy applies to connections
already open, instead of a listener change, which it applies only to new
ones. The connection manager keeps ``jwt``/``authz`` as well: the JWT
providers are listener configuration, and explain reads the policy there.

Several connection managers may name one route configuration (a sidecar's
TLS and plaintext chains of a port, a gateway's servers of a port); they
then enforce the same policy, since policies select a workload and a port.
Two that disagree would be a translation bug, reported as ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pilotfish.ir import HttpConnectionManager, Listener, RouteConfig, RoutePolicy

__all__ = ["route_policy_of", "with_route_policies"]


def route_policy_of(hcm: HttpConnectionManager) -> RoutePolicy | None:
    """What ``hcm``'s virtual hosts enforce: its workload's policy (None if none)."""
    if not hcm.authz and hcm.jwt is None:
        return None
    return RoutePolicy(hcm.authz, jwt=hcm.jwt is not None)


def _policies_by_route(listeners: Iterable[Listener]) -> dict[str, RoutePolicy | None]:
    wanted: dict[str, RoutePolicy | None] = {}
    for listener in listeners:
        chains = [*listener.filter_chains]
        if listener.default_chain is not None:
            chains.append(listener.default_chain)
        for chain in chains:
            hcm = chain.filter
            if not isinstance(hcm, HttpConnectionManager) or not hcm.policy_per_route:
                continue
            if not hcm.route_config_name:
                raise ValueError(
                    f"{hcm.stat_prefix!r} enforces its policy per route but its routes "
                    "are not sent over RDS"
                )
            policy = route_policy_of(hcm)
            name = hcm.route_config_name
            if name in wanted and wanted[name] != policy:
                raise ValueError(
                    f"route configuration {name!r} is served by connection managers "
                    "with different workload policies"
                )
            wanted[name] = policy
    return wanted


def with_route_policies(
    listeners: Iterable[Listener], route_configs: Iterable[RouteConfig]
) -> tuple[RouteConfig, ...]:
    """``route_configs`` with every virtual host carrying the policy of the
    connection managers (of ``listeners``) that serve it."""
    wanted = _policies_by_route(listeners)
    out: list[RouteConfig] = []
    for config in route_configs:
        if config.name not in wanted:
            out.append(config)
            continue
        policy = wanted[config.name]
        vhosts = tuple(
            vh if vh.policy == policy else replace(vh, policy=policy) for vh in config.virtual_hosts
        )
        out.append(
            config if vhosts == config.virtual_hosts else replace(config, virtual_hosts=vhosts)
        )
    return tuple(out)
