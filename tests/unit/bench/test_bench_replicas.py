"""The replicas benchmark's pure parts: route versions from syncz rows, arrivals, summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.controlplane_replicas import replicas_table
from bench.replicas_sync import (
    VS_PATH,
    Arrivals,
    FlipProbe,
    acked_routes,
    flipped,
    latency_summary,
    placement,
    reviews_vs,
)


def row(proxy: str, rds: tuple[str, str], cds: tuple[str, str] = ("c1", "c1")) -> dict[str, Any]:
    """A syncz row: (sent, acked) versions of RDS and CDS."""

    def t(versions: tuple[str, str]) -> dict[str, Any]:
        return {"subscribed": True, "sent_version": versions[0], "acked_version": versions[1]}

    return {"proxy_id": proxy, "types": {"RDS": t(rds), "CDS": t(cds)}}


def test_only_a_route_version_that_was_acked_as_sent_counts() -> None:
    rows = [row("a.default", ("r2", "r2")), row("b.default", ("r2", "r1"))]
    assert acked_routes(rows) == {"a.default": "r2"}  # b was sent r2 and still holds r1


def test_over_vhds_the_route_version_is_rds_and_vhds_together_and_both_must_be_acked() -> None:
    def t(sent: str, acked: str) -> dict[str, Any]:
        return {"subscribed": True, "sent_version": sent, "acked_version": acked}

    edited = {"proxy_id": "a.default", "types": {"RDS": t("r1", "r1"), "VHDS": t("v2", "v2")}}
    behind = {"proxy_id": "b.default", "types": {"RDS": t("r1", "r1"), "VHDS": t("v2", "v1")}}
    # A VirtualService edit over VHDS changes only the virtual hosts' version.
    assert acked_routes([edited, behind]) == {"a.default": "r1+v2"}


def test_placement_names_the_replica_a_proxy_is_in_sync_with() -> None:
    one = [row("a.default", ("r1", "r1")), row("b.default", ("r1", "r1"), cds=("c2", "c1"))]
    two = [row("c.default", ("r1", "r1"))]
    assert placement([one, two]) == {"a.default": 0, "c.default": 1}


def test_the_flip_reaches_the_proxies_whose_routes_differ_between_states() -> None:
    a = {"productpage": "r1", "gateway": "g1", "gone": "x"}
    b = {"productpage": "r2", "gateway": "g1"}
    assert flipped(a, b) == {"productpage"}


def test_arrivals_record_the_first_poll_showing_the_target_and_its_replica() -> None:
    arrivals = Arrivals({"a": "r2", "b": "r2"}, since=100.0)
    arrivals.observe(0, [row("a", ("r2", "r2")), row("b", ("r2", "r1"))], now=100.05)
    assert not arrivals.complete and arrivals.missing == ["b"]
    arrivals.observe(1, [row("b", ("r2", "r2"))], now=100.2)
    arrivals.observe(0, [row("a", ("r2", "r2"))], now=100.9)  # later polls change nothing
    assert arrivals.complete
    assert arrivals.per_replica_ms(0) == 50.0 and arrivals.per_replica_ms(1) == 200.0
    assert (arrivals.count(0), arrivals.count(1)) == (1, 1)
    other = Arrivals({"a": "r3"}, since=0.0)
    other.observe(0, [row("a", ("r2", "r2"))], now=1.0)  # the old version is not arrival
    assert other.per_replica_ms(0) is None and other.missing == ["a"]


def test_summary_leaves_out_applies_with_no_number() -> None:
    summary = latency_summary([30.0, None, 10.0, 20.0])
    assert summary == {"p50": 20.0, "p90": 28.0, "p99": 29.8, "max": 30.0, "samples": 3}
    assert latency_summary([])["max"] is None


def test_the_table_renders_a_run_and_one_that_failed() -> None:
    summary = {"p50": 40.0, "p90": 60.0, "p99": 80.0, "max": 90.0, "samples": 10}
    ok = {
        "parameters": {"applies": 10, "poll_s": 0.01, "deadline_s": 30.0},
        "results": {
            "proxies": [4, 3],
            "replica2_proxies": 2,
            "replica1_proxies": 3,
            "cross_replica_ms": summary,
            "same_replica_ms": summary,
            "apply_cli_ms": summary,
        },
    }
    assert replicas_table(ok).row_count == 3
    assert replicas_table({"parameters": None, "results": {}}).row_count == 3


class ScriptedReplicas:
    """Two replicas' API answers for a flip: proxy ``a`` on replica 1, ``b`` and the
    gateway ``g`` on replica 2; ``g``'s routes do not change with the flip."""

    def __init__(self) -> None:
        self.weight = 0
        self.frozen: set[str] = set()  # proxies that stop taking new routes

    def apply_file(self, path: Path) -> None:
        self.weight = json.loads(path.read_text())["spec"]["http"][0]["route"][0]["weight"]

    def _route(self, proxy: str) -> str:
        return "g0" if proxy == "g" else f"{proxy}-{self.weight}"

    def get(self, replica: int, path: str) -> Any:
        if path == VS_PATH:
            return json.loads(reviews_vs(self.weight))
        if path == "/debug/pushz":
            return {"converged": True}
        proxies = ["a"] if replica == 0 else ["b", "g"]
        return [
            row(p, ("new", "old") if p in self.frozen else (self._route(p), self._route(p)))
            for p in proxies
        ]


def test_the_probe_learns_which_proxies_the_flip_reaches_and_times_each_replica(
    tmp_path: Path,
) -> None:
    mesh = ScriptedReplicas()
    probe = FlipProbe(mesh.get, mesh.apply_file, 2, tmp_path, deadline_s=0.5)
    assert probe.learn() == {"a", "b"}
    assert probe.states == [
        {"a": "a-90", "b": "b-90", "g": "g0"},
        {"a": "a-10", "b": "b-10", "g": "g0"},
    ]
    arrivals, took = probe.flip(0)
    assert mesh.weight == 90 and arrivals.complete and took >= 0
    assert {p: r for p, (_, r) in arrivals.at.items()} == {"a": 0, "b": 1}
    mesh.frozen.add("b")  # never ACKs again: the flip ends at the deadline, b missing
    arrivals, _ = probe.flip(1)
    assert arrivals.missing == ["b"] and arrivals.per_replica_ms(1) is None
