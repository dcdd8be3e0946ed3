"""The interleaved telemetry A/B summary: per-round ratios, spread, RSS, bootstrap, verdicts."""

from __future__ import annotations

import re
from typing import Any

from bench.paced_wrk import Histogram
from bench.telemetry_ab import ab_table, round_order, summarize_rounds
from rich.console import Console


def _side(added_p50: float, cpu: float, rss: float) -> dict[str, Any]:
    added = {"p50": added_p50, "p90": added_p50 * 2, "p99": added_p50 * 4, "mean": added_p50}
    return {
        "added_ms": added,
        "envoy_cpu_us_per_request": cpu,
        "rss_mib": {"client": rss, "server": rss + 2},
    }


def _rounds(pairs: list[tuple[float, float]], rss_on: float = 64.0) -> list[dict[str, Any]]:
    return [{"on": _side(on, 120, rss_on), "off": _side(off, 100, 60.0)} for on, off in pairs]


def test_median_of_per_round_ratios_with_spread_and_verdicts() -> None:
    # Round ratios 1.0, 1.05 and 1.5: the median (1.05) meets the 1.1 target.
    rounds = _rounds([(0.5, 0.5), (0.42, 0.4), (0.9, 0.6)])
    summary = summarize_rounds(rounds, "on", "off")
    p50 = summary["p50"]
    assert (p50["median_ratio"], p50["min_ratio"], p50["max_ratio"]) == (1.05, 1.0, 1.5)
    assert p50["added_ms"]["on"] == {"median": 0.5, "min": 0.42, "max": 0.9}
    assert p50["ratio_of_medians"] == 1.0
    assert summary["envoy_cpu_us_per_request"] == {"on": 120, "off": 100}
    assert summary["envoy_cpu_ratio"] == 1.2
    assert summary["rss"]["extra_mib"] == {"client": 4.0, "server": 4.0}
    assert summary["latency_met"] and summary["rss_met"] and summary["met"]


def test_targets_missed_on_latency_or_memory() -> None:
    summary = summarize_rounds(_rounds([(0.6, 0.5)] * 3, rss_on=75.0), "on", "off")
    assert summary["p50"]["median_ratio"] == 1.2
    assert not summary["latency_met"]
    assert summary["rss"]["extra_mib"]["client"] == 15.0
    assert not summary["rss_met"] and not summary["met"]


def test_round_order_rotates_so_each_goes_first_in_turn() -> None:
    names = ["direct", "on", "off"]
    assert [round_order(names, i)[0] for i in range(3)] == names


def test_table_shows_ratio_spread_and_extra_memory() -> None:
    rounds = _rounds([(0.5, 0.5), (0.42, 0.4), (0.9, 0.6)])
    result = {
        "parameters": {"rounds": 3, "duration_s": 4, "rate": 1000, "connections": 4},
        "results": {"rounds": rounds, "summary": {"on": summarize_rounds(rounds, "on", "off")}},
    }
    console = Console(width=250, record=True)
    console.print(ab_table(result))
    text = console.export_text()
    assert "1.00x" in text  # ratio of the medians: 0.5 / 0.5
    assert "1.05x (1.00-1.50)" in text  # median of the rounds' ratios (min-max)
    assert "0.500 [0.420-0.900]" in text
    assert "+4.0" in text and "1.20x" in text
    assert "not met" not in text


def _spread_hist(centre_us: int, width_us: int = 40) -> Histogram:
    """4000 samples spread evenly over centre +- width/2."""
    return Histogram.of([(centre_us - width_us // 2 + i, 100) for i in range(width_us)])


def _hist_rounds(
    on_added_us: list[int], off_added_us: list[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Histogram]]]:
    rounds, hists = [], []
    for on, off in zip(on_added_us, off_added_us, strict=True):
        rounds.append({"on": _side(on / 1000, 120, 64.0), "off": _side(off / 1000, 100, 60.0)})
        hists.append(
            {
                "direct": _spread_hist(200),
                "on": _spread_hist(200 + on),
                "off": _spread_hist(200 + off),
            }
        )
    return rounds, hists


def test_bootstrap_decides_met_when_the_whole_interval_is_under_target() -> None:
    # Equal added latency in every round, round-to-round noise shared by both meshes.
    rounds, hists = _hist_rounds([500, 600, 550, 520, 580] * 2, [500, 600, 550, 520, 580] * 2)
    summary = summarize_rounds(rounds, "on", "off", hists)
    interval = summary["p50"]["bootstrap"]["ratio_of_medians"]
    assert interval["low"] < 1.0 < interval["high"] <= 1.1
    assert summary["latency_verdict"] == "met"
    assert "p90" in summary and "bootstrap" in summary["p90"]


def test_bootstrap_decides_not_met_when_the_whole_interval_is_over_target() -> None:
    rounds, hists = _hist_rounds([800, 900, 850, 820, 880] * 2, [500, 600, 550, 520, 580] * 2)
    summary = summarize_rounds(rounds, "on", "off", hists)
    interval = summary["p50"]["bootstrap"]["ratio_of_medians"]
    assert 1.1 < interval["low"] <= 1.55 <= interval["high"]
    assert interval["share_within"] == 0.0
    assert summary["latency_verdict"] == "not met" and not summary["latency_met"]


def test_bootstrap_is_undecided_when_rounds_disagree() -> None:
    # Half the rounds at 1.0x, half at 1.3x: the interval straddles the target.
    rounds, hists = _hist_rounds([500, 650] * 5, [500, 500] * 5)
    summary = summarize_rounds(rounds, "on", "off", hists)
    interval = summary["p50"]["bootstrap"]["ratio_of_medians"]
    assert interval["low"] <= 1.1 < interval["high"]
    assert summary["latency_verdict"] == "undecided"


def test_table_shows_the_interval_and_the_verdict() -> None:
    rounds, hists = _hist_rounds([800, 900, 850, 820, 880] * 2, [500, 600, 550, 520, 580] * 2)
    result = {
        "parameters": {"rounds": 10, "duration_s": 4, "rate": 1000, "connections": 4},
        "results": {"summary": {"on": summarize_rounds(rounds, "on", "off", hists)}},
    }
    console = Console(width=250, record=True)
    console.print(ab_table(result))
    text = console.export_text()
    assert "not met (P=0.00)" in text
    # 850 / 550 us: the ratio of the medians, then its interval.
    assert re.search(r"1\.5\dx \[1\.5\d-1\.\d\d\]", text)
