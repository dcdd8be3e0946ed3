"""DestinationRule lookup and traffic-policy merging.

Which DestinationRule applies to a host, seen from a proxy: one in the proxy's
own namespace first, then one in the service's namespace, then one in the root
namespace (Istio's precedence). Policies merge as in Istio: a subset's policy
overrides the rule's top-level one field by field, and ``portLevelSettings``
for the destination port override the level they appear in.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilotfish.api.networking.destination_rule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    DestinationRuleSpec,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    Subset,
    TrafficPolicy,
)
from pilotfish.api.resource import Resource
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.visibility import resource_visible

__all__ = ["EffectivePolicy", "effective_policy", "find_destination_rule", "subsets_of"]


def find_destination_rule(
    snapshot: Snapshot, hostname: str, proxy_namespace: str, service_namespace: str
) -> Resource | None:
    # Only rules exported to the proxy's namespace apply (``exportTo``).
    candidates = snapshot.destination_rules.get(hostname, ())
    rules = tuple(r for r in candidates if resource_visible(r, proxy_namespace))
    if not rules:
        return None
    for ns in (proxy_namespace, service_namespace, snapshot.root_namespace):
        for rule in rules:
            if rule.namespace == ns:
                return rule
    return None


def subsets_of(rule: Resource | None) -> tuple[Subset, ...]:
    if rule is None:
        return ()
    spec = rule.spec
    assert isinstance(spec, DestinationRuleSpec)
    return tuple(spec.subsets)


@dataclass(slots=True)
class EffectivePolicy:
    """The merged traffic policy for one (host, port, subset)."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None

    def apply(self, policy: TrafficPolicy | PortTrafficPolicy | None) -> None:
        if policy is None:
            return
        for name in ("load_balancer", "connection_pool", "outlier_detection", "tls"):
            value = getattr(policy, name)
            if value is not None:
                setattr(self, name, value)


def _apply_level(eff: EffectivePolicy, policy: TrafficPolicy | None, port: int) -> None:
    if policy is None:
        return
    eff.apply(policy)
    for pls in policy.port_level_settings:
        if pls.port is not None and pls.port.number == port:
            eff.apply(pls)


def effective_policy(rule: Resource | None, port: int, subset: str = "") -> EffectivePolicy:
    eff = EffectivePolicy()
    if rule is None:
        return eff
    spec = rule.spec
    assert isinstance(spec, DestinationRuleSpec)
    _apply_level(eff, spec.traffic_policy, port)
    if subset:
        for s in spec.subsets:
            if s.name == subset:
                _apply_level(eff, s.traffic_policy, port)
    return eff
