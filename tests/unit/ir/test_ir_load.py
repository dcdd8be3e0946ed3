"""``pilotfish.ir.load``: the inverse of the IR dump, on every IR golden."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from golden import dump_yaml
from pilotfish import ir
from pilotfish.ir.dump import to_plain
from pilotfish.ir.load import IrLoadError, from_plain, load_proxy_config

TESTDATA = Path(__file__).parents[2] / "testdata"
TRANSLATE_IR = sorted((TESTDATA / "translate" / "out").glob("*.ir.yaml"))
BUILD_IR = sorted((TESTDATA / "build" / "in").glob("*.ir.yaml"))


def _roundtrips(plain: object) -> None:
    config = load_proxy_config(plain)
    assert yaml.safe_load(dump_yaml(config)) == plain
    # And loading the dump of the loaded value gives the very same value.
    assert load_proxy_config(yaml.safe_load(dump_yaml(config))) == config


def test_there_are_goldens() -> None:
    assert len(TRANSLATE_IR) >= 8 and len(BUILD_IR) >= 5


@pytest.mark.parametrize("path", TRANSLATE_IR, ids=lambda p: p.name)
def test_translate_ir_goldens_roundtrip(path: Path) -> None:
    proxies = yaml.safe_load(path.read_text("utf-8"))["proxies"]
    assert proxies
    for plain in proxies.values():
        _roundtrips(plain)


@pytest.mark.parametrize("path", BUILD_IR, ids=lambda p: p.name)
def test_build_inputs_roundtrip(path: Path) -> None:
    _roundtrips(yaml.safe_load(path.read_text("utf-8")))


def test_one_of_fields_and_defaults() -> None:
    chain = ir.FilterChain("c", ir.TcpProxy("s", "cluster"))
    assert from_plain(ir.FilterChain, to_plain(chain)) == chain
    assert from_plain(ir.Cluster, {"name": "c", "discovery": "EDS"}) == ir.Cluster("c", "EDS")


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"clusters": [{"name": "c", "discovery": "NOPE"}]}, "clusters[0].discovery"),
        ({"clusters": [{"name": "c"}]}, "clusters[0].discovery: required"),
        ({"listeners": [{"name": "l", "address": "a", "port": "80"}]}, "listeners[0].port"),
        ({"clusters": [{"name": "c", "discovery": "EDS", "colour": 1}]}, "colour"),
        (
            {
                "listeners": [
                    {
                        "name": "l",
                        "address": "a",
                        "port": 1,
                        "default_chain": {"name": "d", "filter": {"udp_proxy": {}}},
                    }
                ]
            },
            "listeners[0].default_chain.filter: unknown kind 'udp_proxy'",
        ),
    ],
)
def test_bad_input_says_where(data: object, where: str) -> None:
    with pytest.raises(IrLoadError, match=None) as info:
        load_proxy_config(data)
    assert where in str(info.value)
