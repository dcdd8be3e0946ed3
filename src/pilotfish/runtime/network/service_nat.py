"""Service addresses for pods out of the mesh: the part of kube-proxy they need.

Theory of operation. A pod with a sidecar reaches a Service's cluster IP
through its sidecar, which captures the connection and picks an endpoint. A
pod out of the mesh (sidecar injection disabled) has no sidecar, and on these
hosts nothing else answers a cluster IP: there is no kube-proxy. So such a pod
gets, in the nat table of its own network namespace, the rules kube-proxy's
iptables mode would give it: for each cluster IP and port, a DNAT to one of
the service's ready endpoints, chosen at random per connection. The i-th of n
rules matches with probability 1/(n-i), which gives every endpoint an equal
share; the last one always matches. A cluster IP with no ready endpoint is
rejected at once (kube-proxy's REJECT), rather than left to time out.

The rules are rebuilt from the registry on every snapshot, and restored (one
atomic ``iptables-restore`` of the pod's nat table, which holds nothing else)
only when they changed. Connections already open keep their endpoint
(conntrack), as in Kubernetes. The connection leaves the pod in plaintext:
the destination's sidecar accepts it under PERMISSIVE and refuses it under
STRICT, which is what an out-of-mesh client sees in Istio.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from pilotfish.registry.build import Registry

from .capture import restore_script

__all__ = [
    "CHAIN_SERVICES",
    "ServiceRoute",
    "restore_input",
    "service_nat_rules",
    "service_routes",
]

CHAIN_SERVICES = "PF_SERVICES"


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    """One cluster IP and port, and the ready endpoints (ip, port) behind it."""

    vip: str
    port: int
    endpoints: tuple[tuple[str, int], ...]


def _ipv4(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv4Address)
    except ValueError:
        return False


def service_routes(registry: Registry) -> tuple[ServiceRoute, ...]:
    """Every cluster IP and port of the registry's Kubernetes-style services, sorted."""
    out: list[ServiceRoute] = []
    for svc in registry.services.values():
        if svc.resolution != "EDS":
            continue  # DNS and passthrough hosts have no cluster IP to translate
        for vip in (a for a in svc.addresses if _ipv4(a)):
            for port in svc.ports:
                endpoints = sorted(
                    {
                        (inst.address, inst.port)
                        for inst in registry.instances_of(svc.hostname, port.port)
                        if _ipv4(inst.address)
                    }
                )
                out.append(ServiceRoute(vip, port.port, tuple(endpoints)))
    return tuple(sorted(out, key=lambda r: (ipaddress.ip_address(r.vip), r.port)))


def _nat(*args: str) -> list[str]:
    return ["iptables", "-t", "nat", *args]


def _random(probability: float) -> list[str]:
    return ["-m", "statistic", "--mode", "random", "--probability", f"{probability:.10f}"]


def service_nat_rules(routes: Sequence[ServiceRoute]) -> list[list[str]]:
    """The nat-table commands (as ``capture.capture_rules`` gives them) that send
    connections to the routes' cluster IPs on to their endpoints."""
    rules = [_nat("-N", CHAIN_SERVICES), _nat("-A", "OUTPUT", "-p", "tcp", "-j", CHAIN_SERVICES)]
    for route in routes:
        match = ["-d", f"{route.vip}/32", "-p", "tcp", "--dport", str(route.port)]
        n = len(route.endpoints)
        for i, (ip, port) in enumerate(route.endpoints):
            share = [] if i == n - 1 else _random(1 / (n - i))
            target = ["-j", "DNAT", "--to-destination", f"{ip}:{port}"]
            rules.append(_nat("-A", CHAIN_SERVICES, *match, *share, *target))
    return rules


def restore_input(routes: Sequence[ServiceRoute]) -> str:
    """``iptables-restore`` input for an out-of-mesh pod: its whole nat table (the
    DNAT rules) and filter table (a TCP reset for cluster IPs with no endpoint)."""
    reject = [
        f"-A OUTPUT -d {r.vip}/32 -p tcp --dport {r.port} -j REJECT --reject-with tcp-reset"
        for r in routes
        if not r.endpoints
    ]
    return restore_script(service_nat_rules(routes)) + "\n".join(["*filter", *reject, "COMMIT", ""])
