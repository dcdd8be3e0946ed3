"""Outbound and inbound clusters, and the endpoints of EDS clusters.

For every service port there is ``outbound|<port>||<host>`` plus one cluster
per DestinationRule subset, ``outbound|<port>|<subset>|<host>``. How a cluster
finds its endpoints follows the service's resolution: EDS for selected
workloads and STATIC ServiceEntries, STRICT_DNS for DNS, ORIGINAL_DST for NONE.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pilotfish.api.duration import parse_duration_ms
from pilotfish.api.networking.destination_rule import LoadBalancerSettings
from pilotfish.api.resource import Resource
from pilotfish.ir import (
    CertSource,
    Cluster,
    ClusterLoadAssignment,
    ConsistentHashLb,
    Endpoint,
    LbPolicy,
    UpstreamTls,
)
from pilotfish.model.snapshot import Snapshot
from pilotfish.peer_labels import workload_facts
from pilotfish.registry.model import Instance, MeshService, ServicePort
from pilotfish.translate.derived_resource import DERIVED_FROM
from pilotfish.translate.locality import (
    cluster_locality_weighted,
    locality_assignment,
    locality_setting,
)
from pilotfish.translate.names import (
    BLACKHOLE_CLUSTER,
    PASSTHROUGH_CLUSTER,
    inbound_cluster,
    outbound_cluster,
)
from pilotfish.translate.policies import (
    EffectivePolicy,
    effective_policy,
    find_destination_rule,
    subsets_of,
)
from pilotfish.translate.resilience import connection_pool_ir, outlier_detection_ir
from pilotfish.translate.security.mtls import TLS_MODE_LABEL, cluster_tls
from pilotfish.translate.visibility import service_visible

__all__ = [
    "fixed_clusters",
    "inbound_cluster_ir",
    "load_assignments",
    "locality_load_assignments",
    "outbound_clusters",
    "service_load_assignments",
    "subset_labels_of",
]

DEFAULT_CONNECT_TIMEOUT_MS = 10_000


def _lb_policy(lb: LoadBalancerSettings | None) -> tuple[LbPolicy, ConsistentHashLb | None]:
    if lb is None:
        return "LEAST_REQUEST", None
    if lb.consistent_hash is not None:
        ch = lb.consistent_hash
        if ch.maglev is not None:
            return "MAGLEV", ConsistentHashLb("MAGLEV")
        size = ch.ring_hash.minimum_ring_size if ch.ring_hash else ch.minimum_ring_size
        return "RING_HASH", ConsistentHashLb("RING_HASH", size)
    simple = lb.simple or "UNSPECIFIED"
    mapping: dict[str, LbPolicy] = {
        "ROUND_ROBIN": "ROUND_ROBIN",
        "RANDOM": "RANDOM",
        "LEAST_CONN": "LEAST_REQUEST",
        "LEAST_REQUEST": "LEAST_REQUEST",
        "PASSTHROUGH": "CLUSTER_PROVIDED",
        "UNSPECIFIED": "LEAST_REQUEST",
    }
    return mapping[simple], None


def _connect_timeout_ms(policy: EffectivePolicy) -> int:
    pool = policy.connection_pool
    if pool is not None and pool.tcp is not None and pool.tcp.connect_timeout:
        return parse_duration_ms(pool.tcp.connect_timeout)
    return DEFAULT_CONNECT_TIMEOUT_MS


def _uses_http2(sp: ServicePort, policy: EffectivePolicy) -> bool:
    pool = policy.connection_pool
    if pool is not None and pool.http is not None and pool.http.h2_upgrade_policy == "UPGRADE":
        return sp.is_http
    return sp.is_http2


def _negotiates_http(sp: ServicePort, http2: bool, tls: UpstreamTls | None) -> bool:
    """Whether HTTP over this cluster follows the server's ALPN choice: TLS the
    user configured (DestinationRule SIMPLE/MUTUAL, a BackendTLSPolicy) to a port
    that declares no HTTP protocol. gRPC needs HTTP/2 and such a port does not say
    so (GRPCRoute backends behind TLS), while an HTTP/1.1 server selects that."""
    return (
        not http2
        and not sp.is_http
        and tls is not None
        and tls.mode in ("SIMPLE", "MUTUAL")
        and not tls.alpn
    )


def _workload(instance: Instance) -> tuple[tuple[str, str], ...]:
    if not instance.workload:
        return ()
    facts = workload_facts(instance.workload, instance.namespace, dict(instance.labels))
    return tuple(sorted(facts.items()))


def _dns_endpoints(instances: tuple[Instance, ...]) -> tuple[Endpoint, ...]:
    # ``tls_mode`` ("istio" when the endpoint's sidecar accepts mesh mTLS) lets
    # auto-mTLS clusters pick TLS or plaintext per endpoint.
    return tuple(
        Endpoint(
            i.address,
            i.port,
            i.weight,
            i.locality,
            dict(i.labels).get(TLS_MODE_LABEL, ""),
            _workload(i),
        )
        for i in instances
    )


def _cluster(
    snapshot: Snapshot,
    svc: MeshService,
    sp: ServicePort,
    subset: str,
    policy: EffectivePolicy,
    *,
    proxy_namespace: str = "",
    workload_certs: bool = False,
) -> Cluster:
    lb, ch = _lb_policy(policy.load_balancer)
    name = outbound_cluster(svc.hostname, sp.port, subset)
    http2 = _uses_http2(sp, policy)
    tls = cluster_tls(
        snapshot,
        svc,
        sp.port,
        subset,
        policy.tls,
        proxy_namespace=proxy_namespace,
        workload_certs=workload_certs,
        http2=http2,
        original_dst=svc.resolution == "NONE" or lb == "CLUSTER_PROVIDED",
    )
    common = {
        "connect_timeout_ms": _connect_timeout_ms(policy),
        "http2": http2,
        "service": svc.hostname,
        "subset": subset,
        "port": sp.port,
        "tls": tls.tls,
        "auto_mtls": tls.auto_mtls,
        "connection_pool": connection_pool_ir(policy.connection_pool),
        "outlier_detection": outlier_detection_ir(policy.outlier_detection),
        "locality_weighted": cluster_locality_weighted(policy),
        "negotiate_http": _negotiates_http(sp, http2, tls.tls),
    }
    if svc.resolution == "NONE" or lb == "CLUSTER_PROVIDED":
        return Cluster(name, "ORIGINAL_DST", "CLUSTER_PROVIDED", **common)  # type: ignore[arg-type]
    if svc.resolution in ("DNS", "DNS_ROUND_ROBIN"):
        discovery = "STRICT_DNS" if svc.resolution == "DNS" else "LOGICAL_DNS"
        instances = snapshot.registry.instances_of(svc.hostname, sp.port)
        if subset:
            labels = _subset_labels(snapshot, svc, subset)
            instances = tuple(i for i in instances if i.matches(labels))
        return Cluster(
            name,
            discovery,  # type: ignore[arg-type]
            lb,
            endpoints=_dns_endpoints(instances),
            consistent_hash=ch,
            **common,  # type: ignore[arg-type]
        )
    return Cluster(name, "EDS", lb, consistent_hash=ch, **common)  # type: ignore[arg-type]


def _subset_labels(snapshot: Snapshot, svc: MeshService, subset: str) -> dict[str, str]:
    # Subset labels do not depend on which rule the proxy sees for policies:
    # any rule for the host that defines the subset gives its labels.
    for rule in snapshot.destination_rules.get(svc.hostname, ()):
        for s in subsets_of(rule):
            if s.name == subset:
                return dict(s.labels)
    return {}


def outbound_clusters(
    snapshot: Snapshot,
    proxy_namespace: str,
    *,
    workload_certs: bool = False,
    backend_client_cert: str = "",
) -> list[Cluster]:
    """Every outbound cluster a proxy in ``proxy_namespace`` may use.

    Services not exported to ``proxy_namespace`` get no cluster.
    ``workload_certs`` (the proxy has a mesh certificate) enables mesh mTLS
    (auto mTLS, DestinationRule ``ISTIO_MUTUAL``). ``backend_client_cert`` (a
    credential name) is the client certificate presented on the TLS a
    BackendTLSPolicy originates. The result never depends on endpoints of EDS
    services, so endpoint-only changes leave CDS alone.
    """
    clusters: list[Cluster] = []
    for svc in snapshot.registry.services.values():
        if not service_visible(svc, proxy_namespace):
            continue  # not exported to this namespace
        rule = find_destination_rule(snapshot, svc.hostname, proxy_namespace, svc.namespace)
        client_cert = backend_client_cert if _from_backend_tls_policy(rule) else ""
        for sp in svc.ports:
            for subset in ("", *(s.name for s in subsets_of(rule))):
                cluster = _cluster(
                    snapshot,
                    svc,
                    sp,
                    subset,
                    effective_policy(rule, sp.port, subset),
                    proxy_namespace=proxy_namespace,
                    workload_certs=workload_certs,
                )
                clusters.append(_with_client_cert(cluster, client_cert))
    return clusters


def _from_backend_tls_policy(rule: Resource | None) -> bool:
    """Whether ``rule`` is the converter's DestinationRule for BackendTLSPolicies."""
    if rule is None:
        return False
    return rule.metadata.annotations.get(DERIVED_FROM, "").startswith("BackendTLSPolicy ")


def _with_client_cert(cluster: Cluster, credential: str) -> Cluster:
    """``cluster`` presenting ``credential`` on the TLS it originates (SIMPLE becomes
    MUTUAL); unchanged without a credential or without user-configured TLS."""
    tls = cluster.tls
    if not credential or tls is None or tls.mode != "SIMPLE":
        return cluster
    cert = CertSource(credential=credential)
    return replace(cluster, tls=replace(tls, mode="MUTUAL", client_cert=cert))


def fixed_clusters() -> list[Cluster]:
    """Istio's PassthroughCluster and BlackHoleCluster."""
    return [
        Cluster(PASSTHROUGH_CLUSTER, "ORIGINAL_DST", "CLUSTER_PROVIDED", direction="other"),
        Cluster(BLACKHOLE_CLUSTER, "STATIC", "ROUND_ROBIN", direction="other"),
    ]


def inbound_cluster_ir(port: int, address: str, app_port: int, http2: bool) -> Cluster:
    return Cluster(
        inbound_cluster(port),
        "STATIC",
        "ROUND_ROBIN",
        endpoints=(Endpoint(address, app_port),),
        http2=http2,
        port=port,
        direction="inbound",
    )


def subset_labels_of(snapshot: Snapshot, hostname: str) -> dict[str, dict[str, str]]:
    """Subset name -> labels, from every DestinationRule for ``hostname``."""
    labels: dict[str, dict[str, str]] = {}
    for rule in snapshot.destination_rules.get(hostname, ()):
        for s in subsets_of(rule):
            labels.setdefault(s.name, dict(s.labels))
    return labels


def service_load_assignments(
    snapshot: Snapshot, svc: MeshService, subset_labels: dict[str, dict[str, str]]
) -> list[ClusterLoadAssignment]:
    """Endpoints of one service's EDS clusters (one per port and subset)."""
    out: list[ClusterLoadAssignment] = []
    if svc.resolution not in ("EDS", "STATIC"):
        return out
    for sp in svc.ports:
        instances = snapshot.registry.instances_of(svc.hostname, sp.port)
        out.append(
            ClusterLoadAssignment(
                outbound_cluster(svc.hostname, sp.port), _dns_endpoints(instances)
            )
        )
        for subset, labels in sorted(subset_labels.items()):
            out.append(
                ClusterLoadAssignment(
                    outbound_cluster(svc.hostname, sp.port, subset),
                    _dns_endpoints(tuple(i for i in instances if i.matches(labels))),
                )
            )
    return out


def load_assignments(snapshot: Snapshot) -> list[ClusterLoadAssignment]:
    """Endpoints of every EDS cluster. They depend on no proxy fact, so every proxy
    shares them; subsets filter the service's instances by the subset's labels."""
    out: list[ClusterLoadAssignment] = []
    for svc in snapshot.registry.services.values():
        out += service_load_assignments(snapshot, svc, subset_labels_of(snapshot, svc.hostname))
    return out


def locality_load_assignments(
    snapshot: Snapshot,
    proxy_namespace: str,
    proxy_locality: str,
    hostnames: Iterable[str] | None = None,
) -> list[ClusterLoadAssignment]:
    """EDS clusters whose endpoints depend on the proxy's locality, as seen from
    ``proxy_locality`` by a proxy in ``proxy_namespace``; they replace the shared
    assignments of the same names. Empty when no rule the namespace sees sets
    ``localityLbSetting`` (see ``pilotfish.translate.locality``). ``hostnames``
    limits the answer to those services (None: every service)."""
    out: list[ClusterLoadAssignment] = []
    all_rules = snapshot.destination_rules
    if hostnames is None:
        candidates: Iterable[tuple[str, tuple[Resource, ...]]] = all_rules.items()
    else:
        candidates = ((h, all_rules[h]) for h in sorted(set(hostnames)) if h in all_rules)
    for hostname, rules in candidates:
        svc = snapshot.registry.services.get(hostname)
        if svc is None or svc.resolution not in ("EDS", "STATIC") or not rules:
            continue
        rule = find_destination_rule(snapshot, hostname, proxy_namespace, svc.namespace)
        if rule is None:
            continue
        labels = subset_labels_of(snapshot, hostname)
        # Decide from the rule alone before building any assignment: most services
        # have no locality setting, and building all of theirs is most of the cost.
        if not any(
            locality_setting(effective_policy(rule, sp.port, subset)) is not None
            for sp in svc.ports
            for subset in ("", *labels)
        ):
            continue
        for cla in service_load_assignments(snapshot, svc, labels):
            port, subset = _port_subset(cla.cluster_name)
            policy = effective_policy(rule, port, subset)
            if locality_setting(policy) is None:
                continue
            local = locality_assignment(cla, proxy_locality, policy)
            if local is not cla:
                out.append(local)
    return out


def _port_subset(cluster_name: str) -> tuple[int, str]:
    # ``outbound|<port>|<subset>|<host>``
    _, port, subset, _ = cluster_name.split("|", 3)
    return int(port), subset
