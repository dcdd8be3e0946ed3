"""Listener, filter chain and network filter builders."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotfish import ir
from pilotfish.xds.build import build_listener
from pilotfish.xds.build.listeners import build_cidr_range, build_filter_chain_match
from pilotfish.xds.build.network_filters import ACCESS_LOG_FORMAT

HCM = ir.HttpConnectionManager("outbound_0.0.0.0_80", route_config_name="80")
TCP = ir.TcpProxy("outbound|3306||db", "outbound|3306||db.ns.svc.cluster.local")


def _hcm_of(chain_filter: object) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager()
    assert chain_filter.typed_config.Unpack(hcm)  # type: ignore[attr-defined]
    return hcm


def _listener(**kwargs: object) -> ir.Listener:
    fields: dict[str, object] = {
        "name": "l",
        "address": "0.0.0.0",
        "port": 80,
        "filter_chains": (ir.FilterChain("c", HCM),),
    }
    fields.update(kwargs)
    return ir.Listener(**fields)  # type: ignore[arg-type]


def test_plain_listener() -> None:
    proto = build_listener(_listener())
    assert proto.name == "l"
    assert proto.address.socket_address.address == "0.0.0.0"
    assert proto.address.socket_address.port_value == 80
    assert proto.traffic_direction == base_pb2.OUTBOUND
    assert not proto.HasField("bind_to_port")
    assert not proto.HasField("use_original_dst")
    assert not proto.listener_filters
    assert not proto.HasField("default_filter_chain")


def test_bind_to_port_false_is_explicit() -> None:
    proto = build_listener(_listener(bind_to_port=False))
    assert proto.HasField("bind_to_port") and proto.bind_to_port.value is False


def test_outbound_capture_listener_hands_off_by_original_destination() -> None:
    proto = build_listener(
        _listener(use_original_dst=True, filter_chains=(), default_chain=ir.FilterChain("p", TCP))
    )
    assert proto.use_original_dst.value is True
    # Envoy adds the original_dst listener filter itself when the flag is set.
    assert not proto.listener_filters
    assert proto.default_filter_chain.name == "p"
    assert proto.default_filter_chain.filters[0].name == "envoy.filters.network.tcp_proxy"


def test_inbound_capture_listener_restores_destination_without_hand_off() -> None:
    proto = build_listener(
        _listener(direction="inbound", use_original_dst=True, inspect_http=True, inspect_tls=True)
    )
    assert not proto.HasField("use_original_dst")
    assert [f.name for f in proto.listener_filters] == [
        "envoy.filters.listener.original_dst",
        "envoy.filters.listener.tls_inspector",
        "envoy.filters.listener.http_inspector",
    ]
    assert proto.traffic_direction == base_pb2.INBOUND
    assert proto.continue_on_listener_filters_timeout


def test_gateway_capture_listener_also_hands_off() -> None:
    proto = build_listener(_listener(direction="gateway", use_original_dst=True, inspect_tls=True))
    assert proto.use_original_dst.value is True
    assert [f.name for f in proto.listener_filters] == ["envoy.filters.listener.tls_inspector"]


def test_gateway_listener_is_outbound_and_trusts_remote_address() -> None:
    proto = build_listener(_listener(direction="gateway"))
    assert proto.traffic_direction == base_pb2.OUTBOUND
    assert _hcm_of(proto.filter_chains[0].filters[0]).use_remote_address.value is True


def test_sidecar_hcm_defaults() -> None:
    chain_filter = build_listener(_listener()).filter_chains[0].filters[0]
    assert chain_filter.name == "envoy.filters.network.http_connection_manager"
    hcm = _hcm_of(chain_filter)
    assert hcm.stat_prefix == "outbound_0.0.0.0_80"
    assert hcm.codec_type == hcm_pb2.HttpConnectionManager.AUTO
    assert hcm.HasField("use_remote_address") and hcm.use_remote_address.value is False
    assert hcm.rds.route_config_name == "80"
    assert hcm.rds.config_source.HasField("ads")
    assert hcm.rds.config_source.resource_api_version == config_source_pb2.V3
    assert hcm.normalize_path.value is True
    assert not hcm.merge_slashes
    assert hcm.path_with_escaped_slashes_action == hcm_pb2.HttpConnectionManager.KEEP_UNCHANGED
    assert [u.upgrade_type for u in hcm.upgrade_configs] == ["websocket"]
    assert hcm.generate_request_id.value is True
    assert hcm.request_id_extension.typed_config.type_url.endswith("UuidRequestIdConfig")
    assert [f.name for f in hcm.http_filters] == ["envoy.filters.http.router"]
    assert not hcm.access_log


def test_inline_routes_and_access_log() -> None:
    routes = ir.RouteConfig("inbound|80||", (ir.VirtualHost("v", ("*",), ()),))
    hcm_ir = ir.HttpConnectionManager(
        "inbound", inline_routes=routes, access_logs=(ir.AccessLog(),)
    )
    hcm = _hcm_of(
        build_listener(_listener(filter_chains=(ir.FilterChain("c", hcm_ir),)))
        .filter_chains[0]
        .filters[0]
    )
    assert hcm.WhichOneof("route_specifier") == "route_config"
    assert hcm.route_config.name == "inbound|80||"
    (log,) = hcm.access_log
    assert log.name == "envoy.access_loggers.file"
    file_log = file_pb2.FileAccessLog()
    assert log.typed_config.Unpack(file_log)
    assert file_log.path == "/dev/stdout"
    assert file_log.log_format.text_format_source.inline_string == ACCESS_LOG_FORMAT
    assert ACCESS_LOG_FORMAT.startswith("[%START_TIME%]") and ACCESS_LOG_FORMAT.endswith("\n")


def test_hcm_without_routes_is_rejected() -> None:
    with pytest.raises(ValueError, match="neither"):
        build_listener(
            _listener(filter_chains=(ir.FilterChain("c", ir.HttpConnectionManager("x")),))
        )


def test_tcp_proxy_chain() -> None:
    chain_filter = (
        build_listener(_listener(filter_chains=(ir.FilterChain("c", TCP),)))
        .filter_chains[0]
        .filters[0]
    )
    proxy = tcp_proxy_pb2.TcpProxy()
    assert chain_filter.typed_config.Unpack(proxy)
    assert proxy.stat_prefix == "outbound|3306||db"
    assert proxy.cluster == "outbound|3306||db.ns.svc.cluster.local"


def test_filter_chain_match_fields() -> None:
    proto = build_filter_chain_match(
        ir.FilterChainMatch(
            destination_port=9080,
            prefix_ranges=("10.96.0.12/32", "10.0.0.7/8", "fd00::1", "192.168.1.1"),
            transport_protocol="tls",
            application_protocols=("istio-http/1.1", "h2"),
            server_names=("*.example.com",),
        )
    )
    assert proto.destination_port.value == 9080
    assert [(r.address_prefix, r.prefix_len.value) for r in proto.prefix_ranges] == [
        ("10.96.0.12", 32),
        ("10.0.0.0", 8),
        ("fd00::1", 128),
        ("192.168.1.1", 32),
    ]
    assert proto.transport_protocol == "tls"
    assert list(proto.application_protocols) == ["istio-http/1.1", "h2"]
    assert list(proto.server_names) == ["*.example.com"]


def test_empty_filter_chain_match_sets_nothing() -> None:
    proto = build_filter_chain_match(ir.FilterChainMatch())
    assert not proto.HasField("destination_port")
    assert not proto.prefix_ranges and not proto.transport_protocol


def test_chain_without_match_has_no_filter_chain_match() -> None:
    proto = build_listener(_listener())
    assert proto.filter_chains[0].name == "c"
    assert not proto.filter_chains[0].HasField("filter_chain_match")


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-an-ip", "10.0.0/8", ""])
def test_bad_cidr_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        build_cidr_range(bad)
