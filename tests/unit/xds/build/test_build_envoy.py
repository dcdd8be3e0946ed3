"""Real Envoy accepts every xDS build golden (``tests/testdata/build/in``).

Each hand-written IR case is built and loaded by ``envoy --mode validate``
(see ``envoy_validate``); clusters its routes name but the case does not
define get static stand-ins, and the placeholder certificates of the cases
are not parsed (the translation goldens check real ones). A broken regex
shows the check can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from envoy_validate import bootstrap, validate
from pilotfish import ir
from pilotfish.ir.load import load_proxy_config

pytestmark = pytest.mark.integration

IN_DIR = Path(__file__).parents[3] / "testdata" / "build" / "in"
CASES = sorted(p.name.removesuffix(".ir.yaml") for p in IN_DIR.glob("*.ir.yaml"))


def _routed(config: ir.ProxyConfig) -> set[str]:
    names: set[str] = set()
    for rc in config.route_configs:
        for vh in rc.virtual_hosts:
            for route in vh.routes:
                if isinstance(route.action, ir.ForwardAction):
                    names.update(c.cluster for c in route.action.clusters)
                    names.update(m.cluster for m in route.action.mirrors)
    return names


def _bootstrap(name: str, config: ir.ProxyConfig) -> object:
    defined = {c.name for c in config.clusters}
    stand_ins = tuple(
        ir.Cluster(n, "STATIC", endpoints=(ir.Endpoint("127.0.0.1", 1),), direction="other")
        for n in sorted(_routed(config) - defined)
    )
    return bootstrap(name, config, parse_secrets=False, extra_clusters=stand_ins)


def test_envoy_accepts_every_build_case(tmp_path: Path) -> None:
    configs = {
        case: _bootstrap(
            case, load_proxy_config(yaml.safe_load((IN_DIR / f"{case}.ir.yaml").read_text("utf-8")))
        )
        for case in CASES
    }
    failures = validate(configs, tmp_path)  # type: ignore[arg-type]
    assert not failures, "\n".join(failures)


def test_envoy_rejects_a_broken_regex(tmp_path: Path) -> None:
    route = ir.Route(
        "bad", ir.RouteMatch(path=ir.StringMatch("regex", "(")), ir.DirectResponseAction(200)
    )
    config = ir.ProxyConfig(
        route_configs=(ir.RouteConfig("r", (ir.VirtualHost("vh", ("*",), (route,)),)),)
    )
    (failure,) = validate({"bad": _bootstrap("bad", config)}, tmp_path)  # type: ignore[dict-item]
    assert "bad" in failure
