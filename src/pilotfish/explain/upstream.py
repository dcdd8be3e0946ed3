"""The destination cluster of a route: its endpoints and how the proxy talks to them.

Clusters and endpoints are read from the proxy's own IR: EDS clusters take
their endpoints from the ``ClusterLoadAssignment`` of the same name, other
clusters carry them inline. The transport to an endpoint is mesh mTLS
(``ISTIO_MUTUAL``) when the cluster forces it, or under auto mTLS when the
endpoint is marked ``tls_mode: istio``; ``MUTUAL``/``SIMPLE`` are TLS with
user certificates, which carry no mesh identity.
"""

from __future__ import annotations

from pilotfish import ir

__all__ = ["cluster_endpoints", "endpoint_tls", "find_cluster"]


def find_cluster(config: ir.ProxyConfig, name: str) -> ir.Cluster | None:
    return next((c for c in config.clusters if c.name == name), None)


def cluster_endpoints(config: ir.ProxyConfig, cluster: ir.Cluster) -> tuple[ir.Endpoint, ...]:
    if cluster.discovery != "EDS":
        return cluster.endpoints
    cla = next((a for a in config.load_assignments if a.cluster_name == cluster.name), None)
    if cla is None:
        return ()
    if cla.localities:
        return tuple(ep for loc in cla.localities for ep in loc.endpoints)
    return cla.endpoints


def endpoint_tls(cluster: ir.Cluster, endpoint: ir.Endpoint | None) -> tuple[str, str]:
    """(mode, why): mode is ISTIO_MUTUAL, MUTUAL, SIMPLE or DISABLE (plaintext)."""
    if cluster.tls is not None:
        return cluster.tls.mode, f"the cluster originates {cluster.tls.mode} TLS to every endpoint"
    if cluster.auto_mtls is not None:
        if endpoint is not None and endpoint.tls_mode == "istio":
            return (
                cluster.auto_mtls.mode,
                "auto mTLS: the endpoint has a sidecar accepting mesh mTLS",
            )
        return "DISABLE", "auto mTLS: the endpoint is not marked as accepting mesh mTLS, plaintext"
    return "DISABLE", "the cluster has no TLS settings: plaintext"
