"""The telemetry cost pair: telemetry on vs off, priced from one run's numbers."""

from __future__ import annotations

from bench.dataplane import telemetry_cost
from bench.report import dataplane_table
from rich.console import Console


def _run(p50: float, rss: float) -> dict[str, object]:
    return {
        "latency_ms": {"p50": p50, "p90": p50 * 1.5, "p99": p50 * 3},
        "proxies": {"client": {"rss_mib": rss}, "server": {"rss_mib": rss + 1}},
    }


def test_ratio_of_added_latencies_and_extra_memory() -> None:
    arrangements = {
        "direct": _run(0.2, 0),
        "sidecars": _run(1.3, 70.0),
        "sidecars_no_telemetry": _run(1.2, 66.0),
    }
    cost = telemetry_cost(arrangements)
    assert cost["added_latency_ratio"]["p50"] == round(1.1 / 1.0, 3)
    assert cost["extra_rss_mib"] == {"client": 4.0, "server": 4.0}
    assert cost["targets"] == {"added_latency_ratio": 1.1, "extra_rss_mib": 10.0}


def test_missing_side_gives_no_cost_and_table_still_renders() -> None:
    assert telemetry_cost({"direct": _run(0.2, 0), "sidecars": _run(1.0, 60)}) == {}
    arrangements = {
        "direct": _run(0.2, 0),
        "sidecars": _run(1.3, 70.0),
        "sidecars_no_telemetry": _run(1.2, 66.0),
    }
    result = {
        "parameters": {"rate": 1000, "connections": 4, "response_bytes": 1024, "duration_s": 5},
        "results": {"arrangements": arrangements, "telemetry_cost": telemetry_cost(arrangements)},
    }
    console = Console(width=200, record=True)
    console.print(dataplane_table(result))
    text = console.export_text()
    assert "telemetry off" in text
    assert "1.10x" in text
    assert "+4.0" in text
