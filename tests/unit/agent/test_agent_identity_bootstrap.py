"""Bootstrap with workload certificates: SDS cluster, xDS over mTLS, metadata, Envoy accepts it."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pilotfish.agent.bootstrap import SDS_CLUSTER, XDS_CLUSTER, build_bootstrap, write_bootstrap
from pilotfish.agent.config import AgentConfig, ConfigError
from pilotfish.envoy_binary import find_envoy
from pilotfish.model.proxy_view import META_WORKLOAD_CERTS

PLAIN = AgentConfig(name="reviews-v1-0", namespace="bookinfo", service_account="reviews")
WITH_CA = dataclasses.replace(
    PLAIN,
    ca_address="127.0.0.1:15012",
    ca_token_file=Path("/run/token"),
    root_cert_file=Path("/run/root.pem"),
    work_dir=Path("/tmp/pf-agent-reviews"),
    xds_tls=True,
)
SDS_SOURCE = {
    "api_config_source": {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "set_node_on_first_message_only": True,
        "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
    },
    "initial_fetch_timeout": "0s",
    "resource_api_version": "V3",
}


def _clusters(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def test_without_a_ca_nothing_changes() -> None:
    bootstrap = build_bootstrap(PLAIN)
    clusters = _clusters(bootstrap)
    assert SDS_CLUSTER not in clusters
    assert "transport_socket" not in clusters[XDS_CLUSTER]
    assert META_WORKLOAD_CERTS not in bootstrap["node"]["metadata"]
    address = clusters[XDS_CLUSTER]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert address["endpoint"]["address"]["socket_address"]["port_value"] == 15010


def test_sds_cluster_is_http2_over_the_agent_socket() -> None:
    sds = _clusters(build_bootstrap(WITH_CA))[SDS_CLUSTER]
    endpoint = sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"] == {"pipe": {"path": "/tmp/pf-agent-reviews/sds.sock"}}
    options = sds["typed_extension_protocol_options"]
    (http,) = options.values()
    assert "http2_protocol_options" in http["explicit_http_config"]


def test_xds_goes_to_the_mtls_port_with_sds_certs() -> None:
    xds = _clusters(build_bootstrap(WITH_CA))[XDS_CLUSTER]
    endpoint = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    # The default mTLS port (the CA's 15012 never serves xDS).
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15011}
    socket = xds["transport_socket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    tls = socket["typed_config"]
    assert tls["@type"].endswith("UpstreamTlsContext")
    assert tls["sni"] == "pilotfish-control-plane"
    common = tls["common_tls_context"]
    assert common["tls_certificate_sds_secret_configs"] == [
        {"name": "default", "sds_config": SDS_SOURCE}
    ]
    combined = common["combined_validation_context"]
    assert combined["validation_context_sds_secret_config"] == {
        "name": "ROOTCA",
        "sds_config": SDS_SOURCE,
    }
    assert combined["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "pilotfish-control-plane"}}
    ]


def test_secure_host_may_differ_from_the_plain_one() -> None:
    config = dataclasses.replace(WITH_CA, xds_secure_host="10.0.0.1", xds_secure_port=25012)
    xds = _clusters(build_bootstrap(config))[XDS_CLUSTER]
    endpoint = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "10.0.0.1", "port_value": 25012}


def test_workload_certs_metadata_is_set_with_a_ca() -> None:
    assert build_bootstrap(WITH_CA)["node"]["metadata"][META_WORKLOAD_CERTS] == "true"
    plain_xds = dataclasses.replace(WITH_CA, xds_tls=False)
    bootstrap = build_bootstrap(plain_xds)
    assert bootstrap["node"]["metadata"][META_WORKLOAD_CERTS] == "true"
    assert SDS_CLUSTER in _clusters(bootstrap)
    assert "transport_socket" not in _clusters(bootstrap)[XDS_CLUSTER]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ca_token_file": None}, "token file"),
        ({"root_cert_file": None}, "root cert"),
        ({"ca_address": None}, "xDS over TLS needs a CA"),
        ({"ca_address": "nohost"}, "HOST:PORT"),
        ({"cert_ttl": 0}, "TTL"),
        ({"trust_domain": "a/b"}, "trust domain"),
    ],
)
def test_inconsistent_identity_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(WITH_CA, **changes)


def test_spiffe_id_and_socket_path() -> None:
    assert WITH_CA.spiffe_id == "spiffe://cluster.local/ns/bookinfo/sa/reviews"
    other = dataclasses.replace(WITH_CA, trust_domain="example.org")
    assert other.spiffe_id == "spiffe://example.org/ns/bookinfo/sa/reviews"
    assert WITH_CA.sds_socket_path == Path("/tmp/pf-agent-reviews/sds.sock")


@pytest.mark.parametrize("xds_tls", [True, False], ids=["xds-tls", "plain-xds"])
def test_envoy_accepts_the_bootstrap_with_workload_certs(xds_tls: bool, tmp_path: Path) -> None:
    config = dataclasses.replace(WITH_CA, work_dir=tmp_path, xds_tls=xds_tls)
    path = write_bootstrap(config, tmp_path / "bootstrap.json")
    result = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr
