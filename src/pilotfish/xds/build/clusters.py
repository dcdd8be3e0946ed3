"""IR clusters -> Envoy ``Cluster`` protos, plus Istio's two fixed clusters.

EDS clusters fetch their endpoints over ADS, keyed by the cluster name
(``service_name`` is left empty: Envoy then uses the name, and every proxy's
CDS is smaller by one copy of each name); STATIC and DNS
clusters carry theirs inline. ``ORIGINAL_DST`` clusters always use
``CLUSTER_PROVIDED`` load balancing, which is the only policy Envoy accepts
for them. Like Istio, every cluster gets circuit-breaker thresholds at their
maximum, so the mesh does not impose Envoy's default limit of 1024
connections/requests that a plain client would not have hit.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from google.protobuf import wrappers_pb2

from pilotfish import ir
from pilotfish.xds.build._common import ads_config_source, any_of, duration_ms
from pilotfish.xds.build.endpoints import TLS_MODE_ISTIO, endpoints_assignment
from pilotfish.xds.build.tls import raw_buffer_transport_socket, upstream_transport_socket

__all__ = [
    "BLACKHOLE_CLUSTER",
    "HTTP_PROTOCOL_OPTIONS",
    "PASSTHROUGH_CLUSTER",
    "blackhole_cluster",
    "build_cluster",
    "passthrough_cluster",
]

PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_MAX_U32 = 2**32 - 1
_DISCOVERY_TYPES = {
    "EDS": cluster_pb2.Cluster.EDS,
    "STATIC": cluster_pb2.Cluster.STATIC,
    "STRICT_DNS": cluster_pb2.Cluster.STRICT_DNS,
    "LOGICAL_DNS": cluster_pb2.Cluster.LOGICAL_DNS,
    "ORIGINAL_DST": cluster_pb2.Cluster.ORIGINAL_DST,
}
_LB_POLICIES = {
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "RANDOM": cluster_pb2.Cluster.RANDOM,
    "RING_HASH": cluster_pb2.Cluster.RING_HASH,
    "MAGLEV": cluster_pb2.Cluster.MAGLEV,
    "CLUSTER_PROVIDED": cluster_pb2.Cluster.CLUSTER_PROVIDED,
}


def passthrough_cluster() -> ir.Cluster:
    """Istio's ``PassthroughCluster``: forwards to the connection's original destination."""
    return ir.Cluster(
        name=PASSTHROUGH_CLUSTER,
        discovery="ORIGINAL_DST",
        lb_policy="CLUSTER_PROVIDED",
        direction="other",
    )


def blackhole_cluster() -> ir.Cluster:
    """Istio's ``BlackHoleCluster``: a static cluster with no hosts (requests fail fast)."""
    return ir.Cluster(name=BLACKHOLE_CLUSTER, discovery="STATIC", direction="other")


def build_cluster(cluster: ir.Cluster) -> cluster_pb2.Cluster:
    """The ``Cluster`` proto for ``cluster``.

    ``consistent_hash``, when set, decides the policy (ring hash or Maglev);
    ``minimum_ring_size`` applies to ring hash only, as in Istio.
    """
    proto = cluster_pb2.Cluster(
        name=cluster.name,
        type=_DISCOVERY_TYPES[cluster.discovery],
        connect_timeout=duration_ms(cluster.connect_timeout_ms),
    )
    if cluster.discovery == "EDS":
        proto.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
    elif cluster.discovery != "ORIGINAL_DST":
        proto.load_assignment.CopyFrom(endpoints_assignment(cluster.name, cluster.endpoints))
    if cluster.discovery in ("STRICT_DNS", "LOGICAL_DNS"):
        # Istio's single-stack default; Envoy's AUTO would prefer IPv6.
        proto.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
    _set_lb_policy(proto, cluster)
    proto.circuit_breakers.CopyFrom(_max_circuit_breakers())
    if cluster.http2:
        options = hpo_pb2.HttpProtocolOptions()
        options.explicit_http_config.http2_protocol_options.CopyFrom(
            protocol_pb2.Http2ProtocolOptions()
        )
        proto.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(any_of(options))
    _set_transport_socket(proto, cluster)
    return proto


def _set_transport_socket(proto: cluster_pb2.Cluster, cluster: ir.Cluster) -> None:
    """``tls``: TLS to every endpoint. ``auto_mtls`` (ignored when ``tls`` is set):
    TLS only to endpoints whose metadata says ``tlsMode: istio``, plaintext to
    the others, as Istio's transport socket matches do."""
    if cluster.tls is not None:
        proto.transport_socket.CopyFrom(upstream_transport_socket(cluster.tls))
        return
    if cluster.auto_mtls is None:
        return
    istio = proto.transport_socket_matches.add(
        name="tlsMode-istio", transport_socket=upstream_transport_socket(cluster.auto_mtls)
    )
    istio.match.fields["tlsMode"].string_value = TLS_MODE_ISTIO
    # An empty match matches every endpoint: the plaintext fallback comes last.
    disabled = proto.transport_socket_matches.add(
        name="tlsMode-disabled", transport_socket=raw_buffer_transport_socket()
    )
    disabled.match.SetInParent()


def _set_lb_policy(proto: cluster_pb2.Cluster, cluster: ir.Cluster) -> None:
    if cluster.discovery == "ORIGINAL_DST":
        proto.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
        return
    hashing = cluster.consistent_hash
    policy = hashing.kind if hashing is not None else cluster.lb_policy
    proto.lb_policy = _LB_POLICIES[policy]
    if policy == "RING_HASH":
        proto.ring_hash_lb_config.SetInParent()
        if hashing is not None and hashing.minimum_ring_size is not None:
            proto.ring_hash_lb_config.minimum_ring_size.value = hashing.minimum_ring_size
    elif policy == "MAGLEV":
        proto.maglev_lb_config.SetInParent()


def _max_circuit_breakers() -> circuit_breaker_pb2.CircuitBreakers:
    unlimited = wrappers_pb2.UInt32Value(value=_MAX_U32)
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                priority=base_pb2.DEFAULT,
                max_connections=unlimited,
                max_pending_requests=unlimited,
                max_requests=unlimited,
                max_retries=unlimited,
                track_remaining=True,
            )
        ]
    )
