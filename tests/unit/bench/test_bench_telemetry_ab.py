"""The interleaved telemetry A/B summary: per-round ratios, spread, RSS, verdicts."""

from __future__ import annotations

from typing import Any

import pytest
from bench.telemetry_ab import ab_table, interpolated_percentile, round_order, summarize_rounds
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


def test_interpolated_percentile_spreads_a_step() -> None:
    # Four samples printed as 1.0: the median sits in the middle of the step.
    assert interpolated_percentile([1.0, 1.0, 1.0, 1.0], 50, 0.1) == pytest.approx(1.0)
    assert interpolated_percentile([1.0, 1.0, 2.0, 2.0], 50, 0.1) == pytest.approx(1.05)


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
    assert "1.05x [1.00-1.50]" in text
    assert "0.500 [0.420-0.900]" in text
    assert "+4.0" in text and "1.20x" in text
    assert "not met" not in text
