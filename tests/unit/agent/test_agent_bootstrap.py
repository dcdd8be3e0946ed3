"""The bootstrap: node identity and metadata, ADS wiring, and Envoy accepts it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2

from pilotfish.agent.bootstrap import XDS_CLUSTER, build_bootstrap, write_bootstrap
from pilotfish.agent.config import AgentConfig
from pilotfish.envoy_binary import find_envoy
from pilotfish.model.proxy_view import ProxyView

SIDECAR = AgentConfig(
    name="reviews-v1-0",
    namespace="bookinfo",
    labels=(("app", "reviews"), ("version", "v1")),
    service_account="reviews",
    ips=("10.1.0.7", "fd00::7"),
    xds_host="127.0.0.1",
    xds_port=15010,
    admin_port=15000,
    app_address="127.0.0.1",
    app_ports=((9080, 19080),),
    outbound_port=15001,
    inbound_port=15006,
    stats_port=15090,
)


def _cluster(bootstrap: dict[str, Any], name: str) -> dict[str, Any]:
    clusters = bootstrap["static_resources"]["clusters"]
    matches = [c for c in clusters if c["name"] == name]
    assert len(matches) == 1, [c["name"] for c in clusters]
    return matches[0]


def test_node_id_is_name_dot_namespace_and_cluster_the_canonical_service() -> None:
    node = build_bootstrap(SIDECAR)["node"]
    assert node["id"] == "reviews-v1-0.bookinfo"
    assert node["cluster"] == "reviews.bookinfo"


def test_metadata_round_trips_to_the_proxy_view_through_protobuf() -> None:
    metadata = build_bootstrap(SIDECAR)["node"]["metadata"]
    # Envoy sends metadata as a google.protobuf.Struct; go through one like the server does.
    struct = struct_pb2.Struct()
    struct.update(json.loads(json.dumps(metadata)))
    view = ProxyView.from_node(json_format.MessageToDict(struct))
    assert view == ProxyView(
        role="sidecar",
        namespace="bookinfo",
        labels=(("app", "reviews"), ("version", "v1")),
        service_account="reviews",
        interception="NONE",
        bind_ip="10.1.0.7",
        app_address="127.0.0.1",
        app_ports=((9080, 19080),),
        outbound_port=15001,
        inbound_port=15006,
    )


def test_redirect_gateway_view() -> None:
    config = AgentConfig(
        name="ingress",
        namespace="istio-system",
        role="gateway",
        interception="REDIRECT",
        outbound_port=25001,
        inbound_port=25006,
    )
    view = ProxyView.from_node(build_bootstrap(config)["node"]["metadata"])
    assert (view.role, view.interception, view.bind_ip) == ("gateway", "REDIRECT", "0.0.0.0")
    assert (view.outbound_port, view.inbound_port) == (25001, 25006)


def test_ads_config_uses_the_xds_cluster_over_http2() -> None:
    bootstrap = build_bootstrap(SIDECAR)
    dynamic = bootstrap["dynamic_resources"]
    ads = dynamic["ads_config"]
    assert ads["api_type"] == "DELTA_GRPC"  # incremental xDS by default, as Istio
    assert (
        build_bootstrap(replace(SIDECAR, xds_protocol="sotw"))["dynamic_resources"]["ads_config"][
            "api_type"
        ]
        == "GRPC"
    )
    assert ads["transport_api_version"] == "V3"
    assert ads["set_node_on_first_message_only"] is True
    (service,) = ads["grpc_services"]
    assert service["envoy_grpc"]["cluster_name"] == XDS_CLUSTER
    # A restarted control plane is found again within seconds.
    backoff = service["envoy_grpc"]["retry_policy"]["retry_back_off"]
    assert backoff == {"base_interval": "0.25s", "max_interval": "2s"}
    for key in ("cds_config", "lds_config"):
        assert dynamic[key]["ads"] == {}
        assert dynamic[key]["resource_api_version"] == "V3"
    xds = _cluster(bootstrap, XDS_CLUSTER)
    assert xds["type"] == "STATIC"
    (options,) = xds["typed_extension_protocol_options"].values()
    assert "http2_protocol_options" in options["explicit_http_config"]
    endpoint = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15010}


def test_xds_host_name_uses_dns() -> None:
    config = AgentConfig(name="a", namespace="b", xds_host="pilotfish.local", xds_port=16010)
    assert _cluster(build_bootstrap(config), XDS_CLUSTER)["type"] == "STRICT_DNS"


def test_admin_is_loopback_only() -> None:
    config = AgentConfig(name="a", namespace="b", admin_port=17000, ips=("10.0.0.1",))
    admin = build_bootstrap(config)["admin"]["address"]["socket_address"]
    assert admin == {"address": "127.0.0.1", "port_value": 17000}


def test_stats_listener_routes_prometheus_path_to_admin() -> None:
    config = AgentConfig(name="a", namespace="b", admin_port=17000, stats_port=17090)
    bootstrap = build_bootstrap(config)
    (listener,) = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 17090}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert route["match"] == {"path": "/stats/prometheus"}
    target = _cluster(bootstrap, route["route"]["cluster"])
    endpoint = target["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 17000}


def test_stats_port_zero_disables_the_stats_listener() -> None:
    bootstrap = build_bootstrap(AgentConfig(name="a", namespace="b", stats_port=0))
    assert bootstrap["static_resources"]["listeners"] == []
    assert [c["name"] for c in bootstrap["static_resources"]["clusters"]] == [XDS_CLUSTER]


def test_bootstrap_is_deterministic() -> None:
    assert json.dumps(build_bootstrap(SIDECAR)) == json.dumps(build_bootstrap(SIDECAR))


@pytest.mark.parametrize(
    "config",
    [
        SIDECAR,
        AgentConfig(name="gw", namespace="ns", role="gateway", interception="REDIRECT"),
        AgentConfig(name="a", namespace="b", stats_port=0, xds_host="localhost"),
    ],
    ids=["sidecar", "redirect-gateway", "no-stats-dns-xds"],
)
def test_envoy_accepts_the_bootstrap(config: AgentConfig, tmp_path: Path) -> None:
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
