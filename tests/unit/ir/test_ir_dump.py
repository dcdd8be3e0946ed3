"""IR dumps: plain data, defaults omitted, union variants named."""

from __future__ import annotations

import enum

import pytest

from pilotfish import ir
from pilotfish.ir.dump import to_plain


def test_defaults_are_omitted() -> None:
    assert to_plain(ir.Cluster(name="c", discovery="EDS")) == {"name": "c", "discovery": "EDS"}
    assert to_plain(ir.Endpoint("10.0.0.1", 80, weight=2)) == {
        "address": "10.0.0.1",
        "port": 80,
        "weight": 2,
    }


def test_required_fields_stay_even_when_empty() -> None:
    assert to_plain(ir.ClusterLoadAssignment("c", ())) == {"cluster_name": "c", "endpoints": []}
    assert to_plain(ir.Route("r", ir.RouteMatch(), ir.DirectResponseAction(204))) == {
        "name": "r",
        "match": {},
        "action": {"direct_response_action": {"status": 204}},
    }


def test_union_variants_are_named() -> None:
    chain = ir.FilterChain("c", ir.TcpProxy("s", "cl"))
    assert to_plain(chain) == {
        "name": "c",
        "filter": {"tcp_proxy": {"stat_prefix": "s", "cluster": "cl"}},
    }
    redirect = to_plain(ir.Route("r", ir.RouteMatch(), ir.RedirectAction()))
    assert redirect["action"] == {"redirect_action": {}}  # type: ignore[index]
    # An optional single dataclass is not a union of variants: no tag.
    hcm = ir.HttpConnectionManager("s", inline_routes=ir.RouteConfig("r", ()))
    assert to_plain(hcm) == {
        "stat_prefix": "s",
        "inline_routes": {"name": "r", "virtual_hosts": []},
    }


def test_nested_tuples_and_header_ops() -> None:
    ops = ir.HeaderOps(set=(("a", "1"),), remove=("b",))
    assert to_plain(ops) == {"set": [["a", "1"]], "remove": ["b"]}


def test_whole_proxy_config() -> None:
    config = ir.ProxyConfig(clusters=(ir.Cluster(name="c", discovery="STATIC"),))
    assert to_plain(config) == {"clusters": [{"name": "c", "discovery": "STATIC"}]}


def test_scalars_containers_and_errors() -> None:
    class Color(enum.Enum):
        RED = "red"

    assert to_plain({"k": (1, 2.5, None, True)}) == {"k": [1, 2.5, None, True]}
    assert to_plain(frozenset({"b", "a"})) == ["a", "b"]
    assert to_plain(Color.RED) == "red"
    with pytest.raises(TypeError, match="object"):
        to_plain(object())
