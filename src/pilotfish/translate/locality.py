"""Locality load balancing (DestinationRule ``loadBalancer.localityLbSetting``).

Theory of operation. Envoy decides by locality with two EDS facts: the
*priority* of each locality group (lower tried first; traffic spills to the
next priority as hosts of a priority become unhealthy) and the group's
*weight* (with ``locality_weighted_lb_config`` on the cluster). Both depend on
where the calling proxy is, so, as in Istio, they cannot live in the shared
endpoint set. Envoy's alternative, zone-aware routing, needs a "local
cluster" of the proxy's own service in the bootstrap and cannot express
``distribute`` or ``failover`` rules, so Pilotfish does what Istio does:

- the *cluster* carries only what is the same for every proxy
  (``locality_weighted_lb_config``, outlier detection) and stays shared per
  namespace;
- the *endpoints* of clusters that have a locality setting are rewritten
  for the proxy's locality (``locality_assignment``). The control plane keys
  those rewritten assignments by (proxy namespace, proxy locality) only
  (the rule that applies depends on the namespace), and every other
  cluster's endpoints stay in the one set shared by all proxies. Proxies of
  one locality therefore still share all of their EDS, and an endpoint-only
  change still pushes only EDS.

Translation follows Istio exactly: ``distribute`` (weights per ``from`` rule,
endpoints in unlisted localities dropped) wins over failover; failover
(priorities by matching region/zone/subzone, ``failover`` from->to region
rules, ``failoverPriority`` labels) needs outlier detection on the cluster,
otherwise Envoy would never see hosts fail and never move to the next
priority. ``enabled: false`` turns locality load balancing off. Pilotfish has
no mesh-wide default setting, so only rules that name ``localityLbSetting``
enable it. ``failoverPriority`` understands the topology labels that follow
from an endpoint's locality (``topology.kubernetes.io/region``,
``topology.kubernetes.io/zone``, ``topology.istio.io/subzone``) plus
``key=value`` overrides; other labels would need the proxy's own labels,
which are not part of the key, and count as not matching.
"""

from __future__ import annotations

import math
from dataclasses import replace

from pilotfish.api.networking.destination_rule import (
    LocalityLoadBalancerSetting,
    LocalityLoadBalancerSettingDistribute,
    LocalityLoadBalancerSettingFailover,
)
from pilotfish.ir import ClusterLoadAssignment, Endpoint, LocalityLbEndpoints
from pilotfish.translate.policies import EffectivePolicy

__all__ = [
    "REGION_LABEL",
    "SUBZONE_LABEL",
    "ZONE_LABEL",
    "cluster_locality_weighted",
    "locality_assignment",
    "locality_match",
    "locality_setting",
    "split_locality",
]

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"


def split_locality(locality: str) -> tuple[str, str, str]:
    """``"region/zone/subzone"`` (missing parts are ``""``) as a triple."""
    parts = [*locality.split("/", 2), "", ""]
    return parts[0], parts[1], parts[2]


def locality_match(locality: str, rule: str) -> bool:
    """Istio's match of a locality against a rule like ``us-east/*`` or ``us-east/z1``.

    The region must match (or be ``*``); a missing or ``*`` zone/subzone matches any.
    """
    region, zone, subzone = split_locality(locality)
    r_region, r_zone, r_subzone = split_locality(rule)
    return (
        (r_region == "*" or r_region == region)
        and (r_zone in ("*", "") or r_zone == zone)
        and (r_subzone in ("*", "") or r_subzone == subzone)
    )


def locality_setting(policy: EffectivePolicy) -> LocalityLoadBalancerSetting | None:
    """The locality setting in effect for a cluster, or ``None`` (disabled/absent)."""
    lb = policy.load_balancer
    setting = lb.locality_lb_setting if lb is not None else None
    if setting is None or setting.enabled is False:
        return None
    return setting


def _failover_enabled(setting: LocalityLoadBalancerSetting, policy: EffectivePolicy) -> bool:
    return policy.outlier_detection is not None and setting.enabled is not False


def cluster_locality_weighted(policy: EffectivePolicy) -> bool:
    """Whether the cluster needs ``locality_weighted_lb_config`` (Istio's condition:
    failover can happen, or weights are distributed)."""
    setting = locality_setting(policy)
    if setting is None:
        return False
    return bool(setting.distribute) or _failover_enabled(setting, policy)


def _groups(endpoints: tuple[Endpoint, ...]) -> list[LocalityLbEndpoints]:
    by_locality: dict[str, list[Endpoint]] = {}
    for e in endpoints:
        by_locality.setdefault(e.locality, []).append(e)
    # Istio gives every locality the sum of its endpoint weights.
    return [
        LocalityLbEndpoints(loc, tuple(eps), weight=sum(e.weight for e in eps))
        for loc, eps in sorted(by_locality.items())
    ]


def _apply_weights(
    proxy: str,
    groups: list[LocalityLbEndpoints],
    distribute: list[LocalityLoadBalancerSettingDistribute],
) -> list[LocalityLbEndpoints]:
    for rule in distribute:
        if not locality_match(proxy, rule.from_ or ""):
            continue
        unmatched = set(range(len(groups)))
        weights: dict[int, int | None] = {i: g.weight for i, g in enumerate(groups)}
        for target, weight in rule.to.items():
            matched = {i: groups[i].weight or 1 for i in sorted(unmatched)}
            matched = {
                i: w for i, w in matched.items() if locality_match(groups[i].locality, target)
            }
            unmatched -= set(matched)
            total = sum(matched.values())
            for i, original in matched.items():
                share = original * weight / total
                if share > 0:
                    weights[i] = math.ceil(share)
        # Localities no "to" entry names get no traffic from this proxy.
        return [replace(g, weight=weights[i]) for i, g in enumerate(groups) if i not in unmatched]
    return groups


def _lb_priority(proxy: str, endpoint: str) -> int:
    p, e = split_locality(proxy), split_locality(endpoint)
    if p[0] != e[0]:
        return 3
    if p[1] != e[1]:
        return 2
    return 0 if p[2] == e[2] else 1


def _region_failover(
    proxy: str,
    groups: list[LocalityLbEndpoints],
    failover: list[LocalityLoadBalancerSettingFailover],
) -> list[LocalityLbEndpoints]:
    region = split_locality(proxy)[0]
    out = []
    for g in groups:
        priority = _lb_priority(proxy, g.locality)
        if priority == 3:
            for rule in failover:
                if rule.from_ == region:
                    if split_locality(g.locality)[0] != rule.to:
                        priority = 4
                    break
        # Priorities already set by failoverPriority stay more significant.
        out.append(replace(g, priority=g.priority * 5 + priority))
    return out


def _label_value(endpoint: Endpoint, key: str) -> str | None:
    region, zone, subzone = split_locality(endpoint.locality)
    return {REGION_LABEL: region, ZONE_LABEL: zone, SUBZONE_LABEL: subzone}.get(key)


def _priority_failover(
    proxy: str, groups: list[LocalityLbEndpoints], labels: list[str]
) -> list[LocalityLbEndpoints]:
    region, zone, subzone = split_locality(proxy)
    own = {REGION_LABEL: region, ZONE_LABEL: zone, SUBZONE_LABEL: subzone}
    out: list[LocalityLbEndpoints] = []
    for g in groups:
        by_priority: dict[int, list[Endpoint]] = {}
        for e in g.endpoints:
            matched = 0
            for label in labels:
                key, eq, value = label.partition("=")
                wanted = value if eq else own.get(key)
                if wanted is None or _label_value(e, key) != wanted:
                    break
                matched += 1
            by_priority.setdefault(len(labels) - matched, []).append(e)
        for priority, eps in sorted(by_priority.items()):
            out.append(replace(g, endpoints=tuple(eps), priority=priority, weight=g.weight))
    return out


def _compact(groups: list[LocalityLbEndpoints]) -> list[LocalityLbEndpoints]:
    """Renumber priorities 0..N without gaps (Envoy requires it), keeping their order."""
    ranks = {p: i for i, p in enumerate(sorted({g.priority for g in groups}))}
    return sorted(
        (replace(g, priority=ranks[g.priority]) for g in groups),
        key=lambda g: (g.priority, g.locality),
    )


def locality_assignment(
    cla: ClusterLoadAssignment, proxy_locality: str, policy: EffectivePolicy
) -> ClusterLoadAssignment:
    """``cla`` as seen from a proxy in ``proxy_locality`` under ``policy``.

    Returns ``cla`` itself when no locality setting applies.
    """
    setting = locality_setting(policy)
    if setting is None:
        return cla
    groups = _groups(cla.endpoints)
    if setting.distribute:
        groups = _apply_weights(proxy_locality, groups, setting.distribute)
    elif _failover_enabled(setting, policy):
        if setting.failover_priority:
            groups = _priority_failover(proxy_locality, groups, setting.failover_priority)
            if setting.failover:
                groups = _region_failover(proxy_locality, groups, setting.failover)
        else:
            groups = _region_failover(proxy_locality, groups, setting.failover)
        groups = _compact(groups)
    else:
        return cla
    return replace(cla, localities=tuple(groups))
