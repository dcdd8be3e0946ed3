"""DestinationRule resilience (connection pool, outlier detection), locality load
balancing and exportTo visibility."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from google.protobuf import any_pb2

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.api.networking.destination_rule import (
    ConnectionPoolSettings,
    LoadBalancerSettings,
    LocalityLoadBalancerSetting,
    OutlierDetection,
)
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.proxy_view import META_LOCALITY, META_NAMESPACE, EndpointKey, ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.clusters import locality_load_assignments, outbound_clusters
from pilotfish.translate.locality import locality_assignment, locality_match
from pilotfish.translate.policies import EffectivePolicy, find_destination_rule
from pilotfish.translate.resilience import connection_pool_ir, outlier_detection_ir
from pilotfish.translate.virtual_hosts import vs_for_mesh
from pilotfish.translate.visibility import exported_to
from pilotfish.xds.build.clusters import HTTP_PROTOCOL_OPTIONS, build_cluster
from pilotfish.xds.build.endpoints import build_load_assignment
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, ResourceSet

REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
RATINGS = "outbound|9080||ratings.default.svc.cluster.local"


def _snapshot(text: str, previous: Snapshot | None = None) -> Snapshot:
    result = load_text(text, "test.yaml")
    assert not [d for d in result.diagnostics if d.is_error], result.diagnostics
    return build_snapshot(result.resources, 1, previous)


def _pool(data: dict[str, object]) -> ConnectionPoolSettings:
    return ConnectionPoolSettings.model_validate(data)


# -- connection pool -----------------------------------------------------------------


def test_connection_pool_maps_istio_fields() -> None:
    pool = connection_pool_ir(
        _pool(
            {
                "tcp": {
                    "maxConnections": 10,
                    "idleTimeout": "5s",
                    "maxConnectionDuration": "1m",
                    "tcpKeepalive": {"probes": 3, "time": "7200.9s", "interval": "75s"},
                },
                "http": {
                    "http1MaxPendingRequests": 1,
                    "http2MaxRequests": 2,
                    "maxRetries": 0,
                    "maxRequestsPerConnection": 4,
                },
            }
        )
    )
    assert pool == ir.ConnectionPool(
        max_connections=10,
        max_pending_requests=1,
        max_requests=2,
        max_retries=None,  # 0 keeps Istio's unlimited default
        max_requests_per_connection=4,
        idle_timeout_ms=5000,  # the http idle timeout is unset: tcp's applies
        max_connection_duration_ms=60_000,
        tcp_keepalive=ir.TcpKeepalive(probes=3, time_s=7200, interval_s=75),
    )


def test_connection_pool_http_idle_timeout_wins_and_empty_pool_is_none() -> None:
    pool = connection_pool_ir(_pool({"tcp": {"idleTimeout": "5s"}, "http": {"idleTimeout": "1s"}}))
    assert pool is not None and pool.idle_timeout_ms == 1000
    assert connection_pool_ir(_pool({"tcp": {"connectTimeout": "1s"}})) is None
    assert connection_pool_ir(None) is None


def test_built_cluster_carries_limits_and_http1_options() -> None:
    cluster = ir.Cluster(
        REVIEWS,
        "EDS",
        connection_pool=ir.ConnectionPool(
            max_pending_requests=1,
            max_requests=1,
            idle_timeout_ms=2000,
            max_concurrent_streams=9,  # HTTP/2 only: ignored for HTTP/1.1
            tcp_keepalive=ir.TcpKeepalive(probes=2),
        ),
    )
    proto = build_cluster(cluster)
    threshold = proto.circuit_breakers.thresholds[0]
    assert threshold.max_pending_requests.value == 1
    assert threshold.max_requests.value == 1
    assert threshold.max_connections.value == 2**32 - 1
    assert proto.upstream_connection_options.tcp_keepalive.keepalive_probes.value == 2
    options = hpo_pb2.HttpProtocolOptions()
    proto.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
    assert options.common_http_protocol_options.idle_timeout.seconds == 2
    assert options.explicit_http_config.HasField("http_protocol_options")


def test_built_http2_cluster_gets_max_concurrent_streams() -> None:
    cluster = ir.Cluster(
        REVIEWS, "EDS", http2=True, connection_pool=ir.ConnectionPool(max_concurrent_streams=9)
    )
    options = hpo_pb2.HttpProtocolOptions()
    build_cluster(cluster).typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
    assert options.explicit_http_config.http2_protocol_options.max_concurrent_streams.value == 9


# -- outlier detection ---------------------------------------------------------------


def test_outlier_detection_follows_istio() -> None:
    od = outlier_detection_ir(
        OutlierDetection.model_validate(
            {
                "consecutive5xxErrors": 3,
                "consecutiveGatewayErrors": 0,
                "interval": "1s",
                "baseEjectionTime": "30s",
                "maxEjectionPercent": 100,
            }
        )
    )
    assert od is not None
    assert (od.consecutive_5xx, od.enforcing_consecutive_5xx) == (3, 100)
    assert (od.consecutive_gateway_failure, od.enforcing_consecutive_gateway_failure) == (0, 0)
    assert (od.interval_ms, od.base_ejection_time_ms, od.max_ejection_percent) == (
        1000,
        30_000,
        100,
    )
    # Panic routing is off unless minHealthPercent says otherwise.
    assert od.healthy_panic_threshold == 0.0
    proto = build_cluster(ir.Cluster(REVIEWS, "EDS", outlier_detection=od))
    assert proto.outlier_detection.enforcing_success_rate.value == 0
    assert proto.outlier_detection.consecutive_5xx.value == 3
    assert proto.common_lb_config.HasField("healthy_panic_threshold")


def test_deprecated_consecutive_errors_counts_gateway_errors_only() -> None:
    od = outlier_detection_ir(OutlierDetection.model_validate({"consecutiveErrors": 4}))
    assert od is not None
    assert od.consecutive_gateway_failure == 4
    assert od.enforcing_consecutive_gateway_failure == 100
    assert od.enforcing_consecutive_5xx == 0
    assert od.consecutive_5xx is None


def test_local_origin_failures_need_split() -> None:
    plain = outlier_detection_ir(
        OutlierDetection.model_validate({"consecutiveLocalOriginFailures": 2})
    )
    assert plain is not None and plain.consecutive_local_origin_failure is None
    split = outlier_detection_ir(
        OutlierDetection.model_validate(
            {"splitExternalLocalOriginErrors": True, "consecutiveLocalOriginFailures": 2}
        )
    )
    assert split is not None
    assert split.split_external_local_origin_errors
    assert split.consecutive_local_origin_failure == 2
    assert split.enforcing_local_origin_success_rate == 0


def test_port_level_settings_override_pool_and_outlier() -> None:
    snap = _snapshot(
        """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9091}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 5}}
    outlierDetection: {consecutive5xxErrors: 2}
    portLevelSettings:
    - port: {number: 9091}
      connectionPool: {http: {http1MaxPendingRequests: 1}}
"""
    )
    found = {c.name: c for c in outbound_clusters(snap, "default")}
    main = found[REVIEWS]
    admin = found["outbound|9091||reviews.default.svc.cluster.local"]
    assert main.connection_pool == ir.ConnectionPool(max_connections=5)
    assert admin.connection_pool == ir.ConnectionPool(max_pending_requests=1)
    assert admin.outlier_detection == main.outlier_detection is not None


# -- locality ------------------------------------------------------------------------


def _eps(*localities: str) -> tuple[ir.Endpoint, ...]:
    return tuple(ir.Endpoint(f"10.0.0.{i}", 80, locality=loc) for i, loc in enumerate(localities))


def _policy(setting: Mapping[str, object], outlier: bool = True) -> EffectivePolicy:
    return EffectivePolicy(
        load_balancer=LoadBalancerSettings(
            locality_lb_setting=LocalityLoadBalancerSetting.model_validate(setting)
        ),
        outlier_detection=OutlierDetection.model_validate({"consecutive5xxErrors": 1})
        if outlier
        else None,
    )


def test_locality_match_wildcards() -> None:
    assert locality_match("r1/z1/s1", "r1")
    assert locality_match("r1/z1/s1", "r1/*")
    assert locality_match("r1/z1/s1", "*/z1/s1")
    assert not locality_match("r1/z1/s1", "r1/z2")
    assert not locality_match("r2/z1", "r1/*")


def test_failover_priorities_by_proximity() -> None:
    cla = ir.ClusterLoadAssignment(REVIEWS, _eps("r1/z1/s1", "r1/z1/s2", "r1/z2", "r2/z1", "r3"))
    local = locality_assignment(
        cla, "r1/z1/s1", _policy({"failover": [{"from": "r1", "to": "r3"}]})
    )
    by_locality = {g.locality: g.priority for g in local.localities}
    # Same subzone, same zone, same region, the failover region, any other region.
    assert by_locality == {"r1/z1/s1": 0, "r1/z1/s2": 1, "r1/z2": 2, "r3": 3, "r2/z1": 4}
    built = build_load_assignment(local)
    assert [g.priority for g in built.endpoints] == [0, 1, 2, 3, 4]
    assert all(g.load_balancing_weight.value == 1 for g in built.endpoints)


def test_failover_needs_outlier_detection_and_respects_enabled_false() -> None:
    cla = ir.ClusterLoadAssignment(REVIEWS, _eps("r1/z1", "r1/z2"))
    assert locality_assignment(cla, "r1/z1", _policy({}, outlier=False)) is cla
    assert locality_assignment(cla, "r1/z1", _policy({"enabled": False})) is cla
    local = locality_assignment(cla, "r1/z2", _policy({}))
    assert {g.locality: g.priority for g in local.localities} == {"r1/z2": 0, "r1/z1": 1}


def test_failover_priority_topology_labels() -> None:
    cla = ir.ClusterLoadAssignment(REVIEWS, _eps("r1/z1", "r1/z2", "r2/z1"))
    setting = {"failoverPriority": ["topology.kubernetes.io/region", "topology.kubernetes.io/zone"]}
    local = locality_assignment(cla, "r1/z2", _policy(setting))
    assert {g.locality: g.priority for g in local.localities} == {
        "r1/z2": 0,
        "r1/z1": 1,
        "r2/z1": 2,
    }


def test_distribute_weights_and_drops_unlisted_localities() -> None:
    cla = ir.ClusterLoadAssignment(RATINGS, _eps("r1/z1", "r1/z2", "r2/z1", "r3/z1"))
    setting = {"distribute": [{"from": "r1/*", "to": {"r1/*": 80, "r2/*": 20}}]}
    local = locality_assignment(cla, "r1/z1", _policy(setting, outlier=False))
    assert {g.locality: g.weight for g in local.localities} == {
        "r1/z1": 40,
        "r1/z2": 40,
        "r2/z1": 20,
    }
    # A proxy no rule is "from" keeps the default grouping (weights per locality).
    other = locality_assignment(cla, "r9/z1", _policy(setting, outlier=False))
    assert len(other.localities) == 4


LOCALITY_MESH = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-a, namespace: default}
spec: {address: 10.0.0.1, locality: r1/z1, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-b, namespace: default}
spec: {address: REVIEWS_B, locality: r1/z2, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-a, namespace: default}
spec: {address: 10.0.1.1, locality: r1/z1, labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1}
    loadBalancer: {localityLbSetting: {enabled: true}}
"""


def test_cluster_is_locality_weighted_only_with_a_setting() -> None:
    snap = _snapshot(LOCALITY_MESH.replace("REVIEWS_B", "10.0.0.2"))
    found = {c.name: c for c in outbound_clusters(snap, "default")}
    assert found[REVIEWS].locality_weighted
    assert not found[RATINGS].locality_weighted
    proto = build_cluster(found[REVIEWS])
    assert proto.common_lb_config.HasField("locality_weighted_lb_config")
    assert [c.cluster_name for c in locality_load_assignments(snap, "default", "r1/z1")] == [
        REVIEWS
    ]


def _eds(rs: ResourceSet, name: str) -> endpoint_pb2.ClusterLoadAssignment:
    packed = any_pb2.Any.FromString(rs.resources[name])
    cla = endpoint_pb2.ClusterLoadAssignment()
    assert packed.Unpack(cla)
    return cla


def test_generator_keys_locality_endpoints_by_locality_only() -> None:
    gen = MeshGenerator()
    gen.set_snapshot(_snapshot(LOCALITY_MESH.replace("REVIEWS_B", "10.0.0.2")))
    z1 = ProxyView("sidecar", "default", locality="r1/z1", labels=(("app", "a"),))
    z1_other = ProxyView("sidecar", "default", locality="r1/z1", labels=(("app", "b"),))
    z2 = ProxyView("sidecar", "default", locality="r1/z2")
    out_z1, out_z1b, out_z2 = gen.generate(z1), gen.generate(z1_other), gen.generate(z2)
    # One EDS set per (namespace, locality); clusters are shared whatever the locality.
    assert out_z1[ENDPOINT_TYPE] is out_z1b[ENDPOINT_TYPE]
    assert out_z1[ENDPOINT_TYPE].version != out_z2[ENDPOINT_TYPE].version
    assert out_z1[CLUSTER_TYPE].version == out_z2[CLUSTER_TYPE].version
    prio = {g.locality.zone: g.priority for g in _eds(out_z2[ENDPOINT_TYPE], REVIEWS).endpoints}
    assert prio == {"z2": 0, "z1": 1}
    assert _eds(out_z1[ENDPOINT_TYPE], RATINGS) == _eds(out_z2[ENDPOINT_TYPE], RATINGS)

    # An endpoint-only change keeps clusters and rewrites the locality endpoints.
    clusters_before = out_z2[CLUSTER_TYPE].version
    gen.set_snapshot(_snapshot(LOCALITY_MESH.replace("REVIEWS_B", "10.0.0.3"), gen.snapshot))
    after = gen.generate(z2)
    assert after[CLUSTER_TYPE].version == clusters_before
    addresses = [
        e.endpoint.address.socket_address.address
        for g in _eds(after[ENDPOINT_TYPE], REVIEWS).endpoints
        if g.priority == 0
        for e in g.lb_endpoints
    ]
    assert addresses == ["10.0.0.3"]


def test_proxy_view_reads_locality() -> None:
    view = ProxyView.from_node({META_NAMESPACE: "default", META_LOCALITY: "r1/z1/s1"})
    assert view.locality == "r1/z1/s1"
    assert view.endpoint_key == EndpointKey("default", "r1/z1/s1")
    assert ProxyView.from_node({META_NAMESPACE: "default"}).locality == ""


# -- exportTo ------------------------------------------------------------------------


def test_exported_to_rules() -> None:
    assert exported_to((), "a", "b")
    assert exported_to(("*",), "a", "b")
    assert exported_to((".",), "a", "a")
    assert not exported_to((".",), "a", "b")
    assert exported_to(("b", "c"), "a", "b")
    assert not exported_to(("~",), "a", "a")


EXPORT_MESH = """
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: default
  annotations: {networking.istio.io/exportTo: "."}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: other}
spec:
  hosts: [api.example.com]
  exportTo: [default]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: other}
spec:
  hosts: [ratings.default.svc.cluster.local]
  exportTo: ["."]
  http:
  - route: [{destination: {host: ratings.default.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: other}
spec:
  host: ratings.default.svc.cluster.local
  exportTo: ["."]
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}}}
"""


def test_export_to_filters_clusters_routes_and_rules() -> None:
    snap = _snapshot(EXPORT_MESH)
    in_default = {c.name for c in outbound_clusters(snap, "default")}
    in_other = {c.name for c in outbound_clusters(snap, "other")}
    assert "outbound|9080||reviews.default.svc.cluster.local" in in_default
    assert "outbound|9080||reviews.default.svc.cluster.local" not in in_other
    assert "outbound|80||api.example.com" in in_default
    assert "outbound|80||api.example.com" not in in_other
    ratings = "ratings.default.svc.cluster.local"
    assert ratings in vs_for_mesh(snap, "other")
    assert ratings not in vs_for_mesh(snap, "default")
    assert find_destination_rule(snap, ratings, "default", "default") is None
    assert find_destination_rule(snap, ratings, "other", "default") is not None


def test_unexported_service_has_no_virtual_host() -> None:
    from pilotfish.translate.sidecar import sidecar_outbound

    snap = _snapshot(EXPORT_MESH)
    view = ProxyView("sidecar", "other", bind_ip="127.0.0.9")
    domains = {
        d
        for rc in sidecar_outbound(snap, view).route_configs
        for vh in rc.virtual_hosts
        for d in vh.domains
    }
    assert "ratings.default:9080" in domains
    assert not any(d.startswith("reviews") for d in domains)


def test_cluster_proto_type_is_eds() -> None:
    # Guard: resilience fields do not change the discovery type.
    proto = build_cluster(
        ir.Cluster(REVIEWS, "EDS", outlier_detection=ir.OutlierDetection(), locality_weighted=True)
    )
    assert proto.type == cluster_pb2.Cluster.EDS
