"""build_all, pack determinism and the ProtoBuilder caches."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from build_samples import make_sample_config
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2

from pilotfish import ir
from pilotfish.xds.build import ProtoBuilder, build_all, build_resource, pack
from pilotfish.xds.types import (
    ADS_ORDER,
    ADS_PUSH_ORDER,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
)

# Prints one digest over every packed resource of the sample configuration.
_DIGEST_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {here!r})
from build_samples import make_sample_config
from pilotfish.xds.build import build_all, pack
digest = hashlib.sha256()
for type_url, messages in build_all(make_sample_config()).items():
    digest.update(type_url.encode())
    for message in messages:
        digest.update(pack(message))
print(digest.hexdigest())
"""


def test_build_all_by_type_url(sample_config: ir.ProxyConfig) -> None:
    built = build_all(sample_config)
    assert list(built) == list(ADS_PUSH_ORDER)
    expected = {
        CLUSTER_TYPE: (cluster_pb2.Cluster, [c.name for c in sample_config.clusters]),
        ENDPOINT_TYPE: (
            endpoint_pb2.ClusterLoadAssignment,
            [a.cluster_name for a in sample_config.load_assignments],
        ),
        LISTENER_TYPE: (listener_pb2.Listener, [x.name for x in sample_config.listeners]),
        ROUTE_TYPE: (route_pb2.RouteConfiguration, [r.name for r in sample_config.route_configs]),
    }
    for type_url, (message_type, names) in expected.items():
        assert all(isinstance(m, message_type) for m in built[type_url])
        name_field = "cluster_name" if type_url == ENDPOINT_TYPE else "name"
        assert [getattr(m, name_field) for m in built[type_url]] == names


def test_build_all_of_empty_config_has_every_type() -> None:
    assert build_all(ir.ProxyConfig()) == {url: [] for url in ADS_PUSH_ORDER}


def test_pack_is_an_any_with_the_type_url() -> None:
    cluster = build_resource(ir.Cluster(name="c", discovery="EDS"))
    wrapped = any_pb2.Any.FromString(pack(cluster))
    assert wrapped.type_url == CLUSTER_TYPE
    unpacked = cluster_pb2.Cluster()
    assert wrapped.Unpack(unpacked)
    assert unpacked == cluster


def test_equal_ir_packs_to_identical_bytes() -> None:
    first = {url: [pack(m) for m in ms] for url, ms in build_all(make_sample_config()).items()}
    second = {url: [pack(m) for m in ms] for url, ms in build_all(make_sample_config()).items()}
    assert first == second


def test_output_is_identical_across_processes() -> None:
    here = str(Path(__file__).parent)
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT.format(here=here)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
        digests.add(result.stdout.strip())
    local = hashlib.sha256()
    for type_url, messages in build_all(make_sample_config()).items():
        local.update(type_url.encode())
        for message in messages:
            local.update(pack(message))
    assert digests == {local.hexdigest()}


def test_a_change_in_ir_changes_the_bytes(sample_config: ir.ProxyConfig) -> None:
    cluster = sample_config.clusters[0]
    changed = dataclasses.replace(cluster, connect_timeout_ms=cluster.connect_timeout_ms + 1)
    assert pack(build_resource(cluster)) != pack(build_resource(changed))


def test_proto_builder_serializes_equal_ir_once() -> None:
    builder = ProtoBuilder(maxsize=64)
    first = builder.resources(make_sample_config())
    # A separately constructed but equal configuration, as another proxy would have.
    second = builder.resources(make_sample_config())
    for type_url in ADS_ORDER:
        assert first[type_url].keys() == second[type_url].keys()
        for name, data in first[type_url].items():
            assert second[type_url][name] is data
    info = builder.cache_info()["packed"]
    total = sum(len(v) for v in first.values())
    assert info.misses == total
    assert info.hits == total


def test_proto_builder_matches_uncached_output(sample_config: ir.ProxyConfig) -> None:
    builder = ProtoBuilder()
    resources = builder.resources(sample_config)
    built = build_all(sample_config)
    for type_url in ADS_ORDER:
        assert list(resources[type_url].values()) == [pack(m) for m in built[type_url]]
    listener = sample_config.listeners[0]
    assert builder.build(listener) is builder.build(dataclasses.replace(listener))
    assert builder.build(listener) == built[LISTENER_TYPE][0]


def test_proto_builder_cache_is_bounded_and_per_instance() -> None:
    builder = ProtoBuilder(maxsize=2)
    for timeout in range(5):
        builder.packed(ir.Cluster(name="c", discovery="EDS", connect_timeout_ms=1000 + timeout))
    assert builder.cache_info()["packed"].currsize == 2
    other = ProtoBuilder(maxsize=2)
    assert other.cache_info()["packed"].currsize == 0
    builder.clear()
    assert builder.cache_info()["packed"].currsize == 0


def test_duplicate_names_with_different_content_are_rejected() -> None:
    config = ir.ProxyConfig(
        clusters=(
            ir.Cluster(name="c", discovery="EDS"),
            ir.Cluster(name="c", discovery="EDS", http2=True),
        )
    )
    with pytest.raises(ValueError, match="'c'"):
        ProtoBuilder().resources(config)
    same_twice = ir.ProxyConfig(clusters=(ir.Cluster(name="c", discovery="EDS"),) * 2)
    assert list(ProtoBuilder().resources(same_twice)[CLUSTER_TYPE]) == ["c"]
