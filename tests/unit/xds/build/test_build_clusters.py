"""Cluster and load assignment builders."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2

from pilotfish import ir
from pilotfish.xds.build import (
    blackhole_cluster,
    build_cluster,
    build_load_assignment,
    passthrough_cluster,
)

HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def test_eds_cluster_fetches_endpoints_over_ads() -> None:
    proto = build_cluster(
        ir.Cluster(name="outbound|9080||r.default.svc.cluster.local", discovery="EDS")
    )
    assert proto.type == cluster_pb2.Cluster.EDS
    eds = proto.eds_cluster_config
    assert eds.service_name == ""  # Envoy keys EDS by the cluster name
    assert eds.eds_config.HasField("ads")
    assert eds.eds_config.resource_api_version == config_source_pb2.V3
    assert not proto.HasField("load_assignment")
    assert proto.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert proto.connect_timeout.seconds == 10
    assert not proto.typed_extension_protocol_options


def test_static_and_dns_clusters_carry_endpoints() -> None:
    endpoints = (ir.Endpoint("127.0.0.1", 8080), ir.Endpoint("127.0.0.2", 8081, weight=3))
    static = build_cluster(ir.Cluster(name="s", discovery="STATIC", endpoints=endpoints))
    assert static.type == cluster_pb2.Cluster.STATIC
    assert static.load_assignment.cluster_name == "s"
    lb = static.load_assignment.endpoints[0].lb_endpoints
    assert [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for e in lb
    ] == [
        ("127.0.0.1", 8080),
        ("127.0.0.2", 8081),
    ]
    assert [e.load_balancing_weight.value for e in lb] == [1, 3]
    for kind, enum_value in (
        ("STRICT_DNS", cluster_pb2.Cluster.STRICT_DNS),
        ("LOGICAL_DNS", cluster_pb2.Cluster.LOGICAL_DNS),
    ):
        dns = build_cluster(
            ir.Cluster(name="d", discovery=kind, endpoints=(ir.Endpoint("localhost", 80),))
        )  # type: ignore[arg-type]
        assert dns.type == enum_value
        assert dns.dns_lookup_family == cluster_pb2.Cluster.V4_ONLY
        assert (
            dns.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address
            == "localhost"
        )


def test_original_dst_is_cluster_provided() -> None:
    proto = build_cluster(ir.Cluster(name="o", discovery="ORIGINAL_DST", lb_policy="ROUND_ROBIN"))
    assert proto.type == cluster_pb2.Cluster.ORIGINAL_DST
    assert proto.lb_policy == cluster_pb2.Cluster.CLUSTER_PROVIDED
    assert not proto.HasField("load_assignment")
    assert not proto.HasField("upstream_bind_config")


def test_source_address_binds_upstream_connections() -> None:
    cluster = ir.Cluster(name="i", discovery="ORIGINAL_DST", source_address="127.0.0.6")
    source = build_cluster(cluster).upstream_bind_config.source_address
    assert (source.address, source.port_value) == ("127.0.0.6", 0)


def test_negotiated_http_lets_alpn_pick_the_protocol() -> None:
    cluster = ir.Cluster(name="n", discovery="EDS", negotiate_http=True)
    options = hpo_pb2.HttpProtocolOptions()
    build_cluster(cluster).typed_extension_protocol_options[HPO].Unpack(options)
    assert options.HasField("auto_config")
    assert options.auto_config.HasField("http2_protocol_options")
    assert options.auto_config.HasField("http_protocol_options")


def test_fixed_clusters() -> None:
    passthrough = build_cluster(passthrough_cluster())
    assert passthrough.name == "PassthroughCluster"
    assert passthrough.type == cluster_pb2.Cluster.ORIGINAL_DST
    assert passthrough.lb_policy == cluster_pb2.Cluster.CLUSTER_PROVIDED
    blackhole = build_cluster(blackhole_cluster())
    assert blackhole.name == "BlackHoleCluster"
    assert blackhole.type == cluster_pb2.Cluster.STATIC
    assert blackhole.load_assignment.cluster_name == "BlackHoleCluster"
    assert not blackhole.load_assignment.endpoints


def test_lb_policies() -> None:
    for name in ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"):
        proto = build_cluster(ir.Cluster(name="c", discovery="EDS", lb_policy=name))  # type: ignore[arg-type]
        assert cluster_pb2.Cluster.LbPolicy.Name(proto.lb_policy) == name


def test_consistent_hash_decides_policy() -> None:
    ring = build_cluster(
        ir.Cluster(
            name="c",
            discovery="EDS",
            lb_policy="LEAST_REQUEST",
            consistent_hash=ir.ConsistentHashLb("RING_HASH", minimum_ring_size=2048),
        )
    )
    assert ring.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert ring.ring_hash_lb_config.minimum_ring_size.value == 2048
    maglev = build_cluster(
        ir.Cluster(
            name="c",
            discovery="EDS",
            consistent_hash=ir.ConsistentHashLb("MAGLEV", minimum_ring_size=2048),
        )
    )
    assert maglev.lb_policy == cluster_pb2.Cluster.MAGLEV
    assert maglev.HasField("maglev_lb_config")
    assert not maglev.maglev_lb_config.HasField("table_size")


def test_connect_timeout_and_http2() -> None:
    proto = build_cluster(
        ir.Cluster(name="c", discovery="EDS", connect_timeout_ms=1250, http2=True)
    )
    assert proto.connect_timeout.ToMilliseconds() == 1250
    options = hpo_pb2.HttpProtocolOptions()
    assert proto.typed_extension_protocol_options[HPO].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")


def test_circuit_breakers_are_unlimited_as_in_istio() -> None:
    (thresholds,) = build_cluster(ir.Cluster(name="c", discovery="EDS")).circuit_breakers.thresholds
    assert thresholds.max_connections.value == 2**32 - 1
    assert thresholds.max_requests.value == 2**32 - 1
    assert thresholds.max_pending_requests.value == 2**32 - 1
    assert thresholds.max_retries.value == 2**32 - 1


def test_load_assignment_groups_by_locality() -> None:
    proto = build_load_assignment(
        ir.ClusterLoadAssignment(
            "c",
            (
                ir.Endpoint("10.0.0.3", 80, locality="us/b"),
                ir.Endpoint("10.0.0.1", 80, weight=5, locality="us/a/rack1"),
                ir.Endpoint("10.0.0.4", 80),
                ir.Endpoint("10.0.0.2", 80, locality="us/a/rack1"),
            ),
        )
    )
    assert proto.cluster_name == "c"
    groups = [
        (
            (g.locality.region, g.locality.zone, g.locality.sub_zone),
            [e.endpoint.address.socket_address.address for e in g.lb_endpoints],
        )
        for g in proto.endpoints
    ]
    assert groups == [
        (("", "", ""), ["10.0.0.4"]),
        (("us", "a", "rack1"), ["10.0.0.1", "10.0.0.2"]),
        (("us", "b", ""), ["10.0.0.3"]),
    ]
    assert not proto.endpoints[0].HasField("locality")
    assert proto.endpoints[1].lb_endpoints[0].load_balancing_weight.value == 5


def test_empty_load_assignment() -> None:
    proto = build_load_assignment(ir.ClusterLoadAssignment("c", ()))
    assert proto.cluster_name == "c" and not proto.endpoints
