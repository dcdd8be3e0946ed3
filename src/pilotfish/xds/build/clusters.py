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
    proto.circuit_breakers.CopyFrom(_circuit_breakers(cluster.connection_pool))
    options = _http_protocol_options(cluster)
    if options is not None:
        proto.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(any_of(options))
    _set_resilience(proto, cluster)
    _set_transport_socket(proto, cluster)
    if cluster.source_address:
        source = proto.upstream_bind_config.source_address
        source.address = cluster.source_address
        source.port_value = 0
    return proto


def _http_protocol_options(cluster: ir.Cluster) -> hpo_pb2.HttpProtocolOptions | None:
    """HTTP/2 upstream, and the pool's per-connection HTTP limits (Istio puts them
    in ``common_http_protocol_options``; ``max_concurrent_streams`` is HTTP/2 only)."""
    pool = cluster.connection_pool
    common = None
    if pool is not None and (
        pool.idle_timeout_ms is not None
        or pool.max_requests_per_connection is not None
        or pool.max_connection_duration_ms is not None
        or (cluster.http2 and pool.max_concurrent_streams is not None)
    ):
        common = protocol_pb2.HttpProtocolOptions()
        if pool.idle_timeout_ms is not None:
            common.idle_timeout.CopyFrom(duration_ms(pool.idle_timeout_ms))
        if pool.max_requests_per_connection is not None:
            common.max_requests_per_connection.value = pool.max_requests_per_connection
        if pool.max_connection_duration_ms is not None:
            common.max_connection_duration.CopyFrom(duration_ms(pool.max_connection_duration_ms))
    if not cluster.http2 and not cluster.negotiate_http and common is None:
        return None
    options = hpo_pb2.HttpProtocolOptions()
    if common is not None:
        options.common_http_protocol_options.CopyFrom(common)
    if cluster.negotiate_http and not cluster.http2:
        # Envoy offers ``h2,http/1.1`` (the cluster's TLS names no ALPN of its own)
        # and speaks what the server selects; HTTP/1.1 when it selects none.
        auto = options.auto_config
        auto.http_protocol_options.SetInParent()
        auto.http2_protocol_options.SetInParent()
    elif cluster.http2:
        h2 = protocol_pb2.Http2ProtocolOptions()
        if pool is not None and pool.max_concurrent_streams is not None:
            h2.max_concurrent_streams.value = pool.max_concurrent_streams
        options.explicit_http_config.http2_protocol_options.CopyFrom(h2)
    else:
        # Envoy requires a protocol choice once the options are present.
        options.explicit_http_config.http_protocol_options.SetInParent()
    return options


def _set_resilience(proto: cluster_pb2.Cluster, cluster: ir.Cluster) -> None:
    """TCP keepalive, outlier detection (and its panic threshold), locality weighting."""
    pool = cluster.connection_pool
    if pool is not None and pool.tcp_keepalive is not None:
        keepalive = proto.upstream_connection_options.tcp_keepalive
        keepalive.SetInParent()
        if pool.tcp_keepalive.probes is not None:
            keepalive.keepalive_probes.value = pool.tcp_keepalive.probes
        if pool.tcp_keepalive.time_s is not None:
            keepalive.keepalive_time.value = pool.tcp_keepalive.time_s
        if pool.tcp_keepalive.interval_s is not None:
            keepalive.keepalive_interval.value = pool.tcp_keepalive.interval_s
    od = cluster.outlier_detection
    if od is not None:
        out = proto.outlier_detection
        # Success-rate ejection stays off, as in Istio.
        out.enforcing_success_rate.value = 0
        for name in (
            "consecutive_5xx",
            "enforcing_consecutive_5xx",
            "consecutive_gateway_failure",
            "enforcing_consecutive_gateway_failure",
            "consecutive_local_origin_failure",
            "enforcing_consecutive_local_origin_failure",
            "enforcing_local_origin_success_rate",
            "max_ejection_percent",
        ):
            value = getattr(od, name)
            if value is not None:
                getattr(out, name).value = value
        out.split_external_local_origin_errors = od.split_external_local_origin_errors
        if od.interval_ms is not None:
            out.interval.CopyFrom(duration_ms(od.interval_ms))
        if od.base_ejection_time_ms is not None:
            out.base_ejection_time.CopyFrom(duration_ms(od.base_ejection_time_ms))
        if od.healthy_panic_threshold is not None:
            proto.common_lb_config.healthy_panic_threshold.value = od.healthy_panic_threshold
    if cluster.locality_weighted:
        proto.common_lb_config.locality_weighted_lb_config.SetInParent()


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


def _limit(value: int | None) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=_MAX_U32 if value is None else value)


def _circuit_breakers(pool: ir.ConnectionPool | None) -> circuit_breaker_pb2.CircuitBreakers:
    """Istio's thresholds: the pool's limits, unlimited where the pool sets none."""
    pool = pool or ir.ConnectionPool()
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                priority=base_pb2.DEFAULT,
                max_connections=_limit(pool.max_connections),
                max_pending_requests=_limit(pool.max_pending_requests),
                max_requests=_limit(pool.max_requests),
                max_retries=_limit(pool.max_retries),
                track_remaining=True,
            )
        ]
    )
