"""An agent given several control-plane replicas: flags, bootstrap and CA failover."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from agent_test_ca import FakeMeshCa

from pilotfish.agent.bootstrap import XDS_CLUSTER, build_bootstrap, write_bootstrap
from pilotfish.agent.ca_client import CaAuthError, CaClient, CaError
from pilotfish.agent.config import AgentConfig, ConfigError, parse_addresses
from pilotfish.agent.identity import WorkloadKey, build_csr
from pilotfish.cli.agent import _config, agent, replica_identity_defaults
from pilotfish.envoy_binary import find_envoy
from pilotfish.runtime.ports import free_port

IDENTITY = "spiffe://cluster.local/ns/bookinfo/sa/reviews"


def _xds_endpoints(config: AgentConfig) -> list[tuple[str, int]]:
    [cluster] = [
        c
        for c in build_bootstrap(config)["static_resources"]["clusters"]
        if c["name"] == XDS_CLUSTER
    ]
    [locality] = cluster["load_assignment"]["endpoints"]
    return [
        (e["endpoint"]["address"]["socket_address"]["address"],
         e["endpoint"]["address"]["socket_address"]["port_value"])
        for e in locality["lb_endpoints"]
    ]  # fmt: skip


def _xds_cluster(config: AgentConfig) -> dict[str, Any]:
    clusters = build_bootstrap(config)["static_resources"]["clusters"]
    [cluster] = [c for c in clusters if c["name"] == XDS_CLUSTER]
    return cluster


def test_address_lists_parse_and_reject_garbage() -> None:
    assert parse_addresses("10.0.0.1:1, 10.0.0.2:2") == (("10.0.0.1", 1), ("10.0.0.2", 2))
    assert parse_addresses("[fd00::1]:7,cp", 15010) == (("fd00::1", 7), ("cp", 15010))
    for bad in ("", ",", "10.0.0.1:1,10.0.0.2:x"):
        with pytest.raises(ConfigError):
            parse_addresses(bad)


def test_the_flags_comma_form_gives_every_replica(tmp_path: Path) -> None:
    token, root = tmp_path / "token", tmp_path / "root.pem"
    token.write_text("t")
    root.write_text("r")
    config = _config(
        {
            **_defaults(),
            "xds_address": "127.0.0.1:15010,127.0.0.2:25010",
            "ca_token_file": str(token),
            "root_cert_file": str(root),
        }
    )
    # Defaults follow every xDS host, in order.
    assert config.ca_addresses == ("127.0.0.1:15012", "127.0.0.2:15012")
    assert config.xds_targets == (("127.0.0.1", 15011), ("127.0.0.2", 15011))
    explicit = _config(
        {
            **_defaults(),
            "xds_address": "127.0.0.1:15010",
            "ca_address": "127.0.0.1:1012,127.0.0.1:2012",
            "xds_secure_address": "127.0.0.1:1011,127.0.0.1:2011",
            "ca_token_file": str(token),
            "root_cert_file": str(root),
        }
    )
    assert explicit.ca_addresses == ("127.0.0.1:1012", "127.0.0.1:2012")
    assert explicit.xds_targets == (("127.0.0.1", 1011), ("127.0.0.1", 2011))
    assert _xds_endpoints(explicit) == [("127.0.0.1", 1011), ("127.0.0.1", 2011)]


def test_identity_defaults_for_replicas_keep_order_and_drop_duplicates() -> None:
    cas, tls, secure = replica_identity_defaults(
        ("10.0.0.2", "10.0.0.1", "10.0.0.2", "fd00::1"), None, "/run/token", None, None
    )
    assert cas == ("10.0.0.2:15012", "10.0.0.1:15012", "[fd00::1]:15012")
    assert tls is True
    assert secure == (("10.0.0.2", 15011), ("10.0.0.1", 15011), ("fd00::1", 15011))


def test_one_replica_bootstrap_is_unchanged_by_the_failover_settings() -> None:
    one = _xds_cluster(AgentConfig(name="a", namespace="b"))
    assert "outlier_detection" not in one
    assert one["upstream_connection_options"]["tcp_keepalive"] == {"keepalive_time": 300}
    (options,) = one["typed_extension_protocol_options"].values()
    ping = options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"]
    assert ping == {"interval": "30s", "timeout": "10s"}


def test_several_replicas_are_endpoints_of_one_xds_cluster_with_ejection() -> None:
    config = AgentConfig(
        name="a", namespace="b", xds_port=1010, xds_alternates=(("127.0.0.1", 2010),)
    )
    assert _xds_endpoints(config) == [("127.0.0.1", 1010), ("127.0.0.1", 2010)]
    cluster = _xds_cluster(config)
    assert cluster["type"] == "STATIC"
    outlier = cluster["outlier_detection"]
    assert outlier["consecutive_local_origin_failure"] == 1
    assert outlier["max_ejection_percent"] == 100
    # A silently dead replica is noticed within seconds, not minutes.
    keepalive = cluster["upstream_connection_options"]["tcp_keepalive"]
    assert (
        keepalive["keepalive_time"]
        + keepalive["keepalive_interval"] * keepalive["keepalive_probes"]
        <= 20
    )
    # A hung replica (connections open, nothing answering) misses a PING within 10 s.
    (options,) = cluster["typed_extension_protocol_options"].values()
    ping = options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"]
    assert ping == {"interval": "5s", "timeout": "5s"}
    named = AgentConfig(name="a", namespace="b", xds_alternates=(("cp-2.local", 15010),))
    assert _xds_cluster(named)["type"] == "STRICT_DNS"


@pytest.mark.parametrize(
    "config",
    [
        AgentConfig(name="a", namespace="b", stats_port=0, xds_alternates=(("127.0.0.2", 15010),)),
        AgentConfig(name="a", namespace="b", stats_port=0, xds_alternates=(("localhost", 15010),)),
    ],
    ids=["static", "dns"],
)
def test_envoy_accepts_a_bootstrap_with_replicas(config: AgentConfig, tmp_path: Path) -> None:
    path = write_bootstrap(config, tmp_path / "bootstrap.json")
    result = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the CA client ------------------------------------------------------------------------


@pytest.fixture
async def ca() -> AsyncIterator[FakeMeshCa]:
    fake = FakeMeshCa(tokens={"tok-reviews": ("bookinfo", "reviews")})
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def _csr() -> str:
    return build_csr(WorkloadKey.generate(), IDENTITY)


async def test_a_dead_replica_costs_one_attempt_and_the_live_one_is_kept(
    ca: FakeMeshCa, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("tok-reviews")
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    live = f"127.0.0.1:{ca.port}"
    client = CaClient([dead, live], ca.root_pem.encode(), token, timeout=5.0)
    try:
        assert client.target == dead
        first = await client.create_certificate(_csr())
        assert client.target == live
        second = await client.create_certificate(_csr())
    finally:
        await client.close()
    assert first.cert_chain and second.cert_chain
    assert len(ca.calls) == 2


async def test_a_refused_token_is_not_tried_on_another_replica(
    ca: FakeMeshCa, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("forged")
    live = f"127.0.0.1:{ca.port}"
    client = CaClient([live, live], ca.root_pem.encode(), token, timeout=5.0)
    try:
        with pytest.raises(CaAuthError):
            await client.create_certificate(_csr())
    finally:
        await client.close()
    assert len(ca.calls) == 1


async def test_every_replica_down_raises_a_retryable_error(ca: FakeMeshCa, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-reviews")
    ca.fail_with = [grpc.StatusCode.UNAVAILABLE]
    live = f"127.0.0.1:{ca.port}"
    dead = f"127.0.0.1:{free_port()}"
    client = CaClient([live, dead], ca.root_pem.encode(), token, timeout=5.0)
    try:
        with pytest.raises(CaError) as info:
            await client.create_certificate(_csr())
        assert info.value.retryable
        assert dead in str(info.value)
        # The next request starts again from the first address, which now answers.
        response = await client.create_certificate(_csr())
    finally:
        await client.close()
    assert response.cert_chain


def _defaults() -> dict[str, Any]:
    """The agent command's options as click gives them with no flags but the required."""
    context = agent.make_context("agent", ["--name", "a", "--namespace", "b"])
    return dict(context.params)
