"""The HTTP filter registry: one object per filter, chain order, router always last."""

from __future__ import annotations

import dataclasses

import pytest
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import struct_pb2

from pilotfish import ir
from pilotfish.xds.build import HTTP_FILTERS, HttpFilter, UnknownHttpFilterError, build_http_filters
from pilotfish.xds.build.http_filters import (
    FILTERS_BY_NAME,
    http_filter_names,
    set_route_filter_configs,
    with_http_filters,
)
from pilotfish.xds.build.routes import build_route

ALLOW = ir.AuthzPolicy("default/allow", "ALLOW", ())
DENY = ir.AuthzPolicy("default/deny", "DENY", ())
FAULTY = ir.Route(
    "r",
    ir.RouteMatch(),
    ir.DirectResponseAction(200),
    fault=ir.FaultPolicy(abort_http_status=503, abort_percent=1.0),
)
CORS = ir.Route(
    "c", ir.RouteMatch(), ir.DirectResponseAction(200), cors=ir.CorsPolicy(allow_methods=("GET",))
)


def _hcm(*names: str, **fields: object) -> ir.HttpConnectionManager:
    return ir.HttpConnectionManager("s", route_config_name="r", http_filters=names, **fields)  # type: ignore[arg-type]


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


def test_names_are_unique_and_chain_order_is_istios() -> None:
    names = [f.name for f in HTTP_FILTERS]
    assert names == [
        "peer_metadata",
        "grpc_messages",
        "jwt_authn",
        "rbac_deny",
        "rbac_allow",
        "rbac_audit",
        "fault",
        "cors",
        "peer_headers",
    ]
    assert len({f.envoy_name for f in HTTP_FILTERS}) == len(HTTP_FILTERS)
    assert set(FILTERS_BY_NAME) == set(names)


def test_wanted_filters_follow_settings_and_routes_in_chain_order() -> None:
    hcm = _hcm(authz=(ALLOW, DENY))
    assert http_filter_names(hcm, ()) == ("rbac_deny", "rbac_allow")
    assert http_filter_names(hcm, (CORS, FAULTY)) == ("rbac_deny", "rbac_allow", "fault", "cors")
    assert http_filter_names(_hcm(), (CORS,)) == ("cors",)
    plain = _hcm()
    assert with_http_filters(plain, ()) is plain


def test_route_configs_go_under_the_envoy_name() -> None:
    proto = build_route(FAULTY)
    assert list(proto.typed_per_filter_config) == ["envoy.filters.http.fault"]
    assert list(build_route(CORS).typed_per_filter_config) == ["envoy.filters.http.cors"]


def test_a_new_filter_is_one_object() -> None:
    """A filter added to a registry: listed when wanted, built in chain order
    with its listener config, and its per-route config set on routes."""
    stats = HttpFilter(
        name="stats",
        envoy_name="example.stats",
        wanted=lambda _hcm, routes: any(r.name == "c" for r in routes),
        listener_config=lambda hcm: struct_pb2.Struct(
            fields={"p": struct_pb2.Value(string_value=hcm.stat_prefix)}
        ),
        route_config=lambda route: struct_pb2.Struct() if route.name == "c" else None,
    )
    registry = (*HTTP_FILTERS, stats)
    hcm = _hcm(authz=(ALLOW,))
    names = http_filter_names(hcm, (CORS,), registry)
    assert names == ("rbac_allow", "cors", "stats")
    built = build_http_filters(dataclasses.replace(hcm, http_filters=names), registry)
    assert [f.name for f in built] == [
        "envoy.filters.http.rbac.allow",
        "envoy.filters.http.cors",
        "example.stats",
        "envoy.filters.http.router",
    ]
    assert isinstance(built[2], hcm_pb2.HttpFilter)
    proto = build_route(ir.Route("c", ir.RouteMatch(), ir.DirectResponseAction(200)))
    set_route_filter_configs(
        ir.Route("c", ir.RouteMatch(), ir.DirectResponseAction(200)), proto, registry
    )
    assert list(proto.typed_per_filter_config) == ["example.stats"]
