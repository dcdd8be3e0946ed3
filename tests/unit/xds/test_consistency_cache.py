"""The consistency checker decodes a resource once and keeps it while it is in use.

A routing edit leaves every cluster byte for byte the same: checking the new
compositions must not decode them again, and what no composition holds any
more must not stay cached for ever.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import any_pb2

from pilotfish.xds.consistency import ConsistencyChecker, Violation
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE


def _eds_cluster(name: str) -> bytes:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    packed = any_pb2.Any()
    packed.Pack(cluster)
    return packed.SerializeToString()


A, B = _eds_cluster("outbound|80||a"), _eds_cluster("outbound|80||b")


def test_unchanged_resources_are_not_decoded_again_after_a_change() -> None:
    checker = ConsistencyChecker()
    found = checker.check({CLUSTER_TYPE: {"a": A, "b": B}})
    assert found == (Violation(ENDPOINT_TYPE, ("outbound|80||a", "outbound|80||b")),)
    assert checker.decoded == 2

    checker.age()  # a configuration change: the same cluster bytes come back
    endpoints = {"outbound|80||a": b"", "outbound|80||b": b""}
    assert checker.check({CLUSTER_TYPE: {"a": A, "b": B}, ENDPOINT_TYPE: endpoints}) == ()
    assert checker.decoded == 2


def test_what_a_whole_generation_did_not_use_is_dropped() -> None:
    checker = ConsistencyChecker()
    checker.check({CLUSTER_TYPE: {"a": A, "b": B}})
    checker.age()
    checker.check({CLUSTER_TYPE: {"a": A}})  # b is gone from the configuration
    assert len(checker) == 2  # b is kept one generation longer
    checker.age()
    checker.check({CLUSTER_TYPE: {"a": A}})
    assert len(checker) == 1
    checker.check({CLUSTER_TYPE: {"b": B}})  # b back: decoded again
    assert checker.decoded == 3


def test_an_endpoint_change_only_looks_the_wanted_names_up() -> None:
    checker = ConsistencyChecker()
    clusters = {"a": A, "b": B}
    both = {"outbound|80||a": b"", "outbound|80||b": b""}
    assert checker.check({CLUSTER_TYPE: clusters, ENDPOINT_TYPE: both}) == ()
    decoded = checker.decoded
    # The same cluster mapping with a new EDS set: b's load assignment is gone.
    found = checker.check({CLUSTER_TYPE: clusters, ENDPOINT_TYPE: {"outbound|80||a": b""}})
    assert found == (Violation(ENDPOINT_TYPE, ("outbound|80||b",)),)
    assert checker.check({CLUSTER_TYPE: clusters, ENDPOINT_TYPE: both}) == ()
    assert checker.decoded == decoded
    # Another mapping with other contents is read for what it holds, not the cached pair's.
    assert checker.check({CLUSTER_TYPE: {"a": A}, ENDPOINT_TYPE: {}}) == (
        Violation(ENDPOINT_TYPE, ("outbound|80||a",)),
    )
