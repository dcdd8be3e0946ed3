"""DiscoveryResponse encoding from pre-serialized Any bytes."""

from __future__ import annotations

from ads_helpers import cla, cluster
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds.server.encode import ResponseEncoder, encode_body, encode_response
from pilotfish.xds.server.state import Response
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, ResourceSet


def decode(data: bytes) -> discovery_pb2.DiscoveryResponse:
    return discovery_pb2.DiscoveryResponse.FromString(data)


def test_whole_set_decodes_to_expected_response() -> None:
    # Names of varied length so some Any messages need multi-byte length prefixes.
    names = ["a", "b" * 200, "c" * 20000]
    rs = ResourceSet(CLUSTER_TYPE, {n: cluster(n) for n in names})
    encoder = ResponseEncoder()
    data = encoder.encode(Response(CLUSTER_TYPE, rs.version, "n7", rs))
    msg = decode(data)
    assert msg.version_info == rs.version
    assert msg.type_url == CLUSTER_TYPE
    assert msg.nonce == "n7"
    got = []
    for any_msg in msg.resources:
        assert any_msg.type_url == CLUSTER_TYPE
        c = cluster_pb2.Cluster()
        assert any_msg.Unpack(c)
        got.append(c.name)
    assert got == sorted(names)
    # Byte-identical to what protobuf itself would produce for the same message.
    expected = discovery_pb2.DiscoveryResponse(
        version_info=rs.version, type_url=CLUSTER_TYPE, nonce="n7"
    )
    for n in sorted(names):
        expected.resources.add().ParseFromString(rs.resources[n])
    assert msg == expected


def test_subset_response_contains_only_named_resources() -> None:
    rs = ResourceSet(ENDPOINT_TYPE, {n: cla(n, 9000 + i) for i, n in enumerate("abc")})
    data = ResponseEncoder().encode(Response(ENDPOINT_TYPE, rs.version, "3", rs, names=("c",)))
    msg = decode(data)
    assert len(msg.resources) == 1
    assignment = endpoint_pb2.ClusterLoadAssignment()
    msg.resources[0].Unpack(assignment)
    assert assignment.cluster_name == "c"
    assert assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value == (
        9002
    )


def test_empty_response_and_empty_fields() -> None:
    rs = ResourceSet(CLUSTER_TYPE, {})
    msg = decode(ResponseEncoder().encode(Response(CLUSTER_TYPE, rs.version, "1", rs)))
    assert list(msg.resources) == []
    assert msg.version_info == rs.version
    assert encode_response("", "", "", b"") == b""
    assert encode_body([]) == b""


def test_body_is_encoded_once_per_set_object() -> None:
    rs = ResourceSet(CLUSTER_TYPE, {f"c{i}": cluster(f"c{i}") for i in range(50)})
    encoder = ResponseEncoder()
    first = encoder.body_of(rs)
    for nonce in range(100):
        encoder.encode(Response(CLUSTER_TYPE, rs.version, str(nonce), rs))
    assert encoder.body_of(rs) is first
    assert encoder.misses == 1
    assert encoder.hits == 101


def test_cache_is_bounded_and_never_confuses_sets() -> None:
    encoder = ResponseEncoder(max_entries=2)
    sets = [ResourceSet(CLUSTER_TYPE, {"c": cluster("c", timeout_s=i + 1)}) for i in range(5)]
    for s in sets:
        encoder.body_of(s)
    assert len(encoder) == 2
    for s in sets:
        msg = decode(encode_response("v", CLUSTER_TYPE, "1", encoder.body_of(s)))
        assert (
            msg.resources[0].value
            == cluster_pb2.Cluster.FromString(msg.resources[0].value).SerializeToString()
        )
        assert bytes(msg.resources[0].SerializeToString()) == s.resources["c"]


def test_composed_set_is_encoded_from_cached_parts() -> None:
    shared = ResourceSet(CLUSTER_TYPE, {f"out{i}": cluster(f"out{i}") for i in range(20)})
    views = [
        ResourceSet.compose(
            CLUSTER_TYPE, [shared, ResourceSet(CLUSTER_TYPE, {f"in{v}": cluster(f"in{v}")})]
        )
        for v in range(5)
    ]
    encoder = ResponseEncoder()
    for v, composed in enumerate(views):
        msg = decode(encoder.encode(Response(CLUSTER_TYPE, composed.version, "1", composed)))
        names = []
        for any_msg in msg.resources:
            c = cluster_pb2.Cluster()
            any_msg.Unpack(c)
            names.append(c.name)
        assert sorted(names) == sorted([*(f"out{i}" for i in range(20)), f"in{v}"])
        assert msg.version_info == composed.version
    # The shared part was encoded once; each view's own part once.
    assert encoder.misses == 1 + len(views)
