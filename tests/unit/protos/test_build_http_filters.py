"""The HTTP filter registry: named filters in order, router always last."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotfish import ir
from pilotfish.xds.build import HTTP_FILTERS, UnknownHttpFilterError, build_http_filters


def _hcm(*names: str) -> ir.HttpConnectionManager:
    return ir.HttpConnectionManager("s", route_config_name="r", http_filters=names)


def test_router_only_by_default() -> None:
    (router,) = build_http_filters(_hcm())
    assert router.name == "envoy.filters.http.router"
    assert router.typed_config.Is(router_pb2.Router.DESCRIPTOR)


def test_unknown_filter_is_rejected_with_its_name() -> None:
    with pytest.raises(UnknownHttpFilterError, match="'lua'"):
        build_http_filters(_hcm("lua"))


def test_router_may_not_be_listed() -> None:
    with pytest.raises(UnknownHttpFilterError, match="'router'"):
        build_http_filters(_hcm("router"))


def test_registered_filters_run_in_order_before_router() -> None:
    def named(name: str) -> object:
        return lambda _hcm: hcm_pb2.HttpFilter(name=name)

    registry = MappingProxyType(
        {
            **HTTP_FILTERS,
            "fault": named("envoy.filters.http.fault"),
            "cors": named("envoy.filters.http.cors"),
        }
    )
    filters = build_http_filters(_hcm("cors", "fault"), registry)  # type: ignore[arg-type]
    assert [f.name for f in filters] == [
        "envoy.filters.http.cors",
        "envoy.filters.http.fault",
        "envoy.filters.http.router",
    ]


def test_default_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        HTTP_FILTERS["x"] = HTTP_FILTERS["router"]  # type: ignore[index]
