"""The realism benchmark's pure parts: Envoy's update_time stats, the summary, the table."""

from __future__ import annotations

from typing import Any

import pytest
from bench.xds_realism import _summary, latest_update_ms, realism_table
from rich.console import Console

STATS = """\
cluster.outbound|9080||svc-1.default.svc.cluster.local.update_time: 1700000000100
cluster.outbound|9080||svc-50.default.svc.cluster.local.update_time: 1700000000900
cluster_manager.cds.update_time: 1700000000950
http.outbound_0.0.0.0_9080.rds.9080.update_time: 1700000000500
http.outbound_0.0.0.0_9080.rds.9080.update_attempt: 7
listener_manager.lds.update_time: 1700000000990
"""


def test_newest_update_time_per_type() -> None:
    assert latest_update_ms(STATS, "RDS") == 1700000000500
    assert latest_update_ms(STATS, "EDS") == 1700000000900  # not CDS's
    assert latest_update_ms("cluster_manager.cds.update_time: 5\n", "EDS") is None
    assert latest_update_ms("", "RDS") is None


def _row(envoy: float | None, sim: float | None, envoy_own: float | None, own: float) -> Any:
    def group(value: float | None) -> dict[str, Any]:
        return {"convergence_s": value}

    return {"envoy": group(envoy), "sim": group(sim), "envoy_own_s": envoy_own, "sim_own_s": own}


def test_summary_is_the_median_of_repeats_and_their_ratio() -> None:
    rows = [_row(0.4, 0.2, 0.3, 0.1), _row(0.6, 0.3, 0.5, 0.25), _row(None, 0.5, None, 0.2)]
    summary = _summary(rows)
    assert summary["envoy"] == {"median_s": 0.5, "min_s": 0.4, "max_s": 0.6, "not_converged": 1}
    assert summary["sim"]["median_s"] == 0.3
    assert summary["ratio_envoy_to_sim"] == pytest.approx(0.5 / 0.3)
    assert summary["envoy_own_median_s"] == 0.4 and summary["envoy_own_missing"] == 1
    assert summary["ratio_own"] == pytest.approx(0.4 / 0.2)


def test_table_renders_results_and_errors() -> None:
    edit = _summary([_row(0.4, 0.2, 0.3, 0.1)])
    result = {
        "parameters": {"proxies": 50, "services": 100},
        "results": {"edits": {"vs_edit": edit}, "envoy_rss_mib": {"median": 66, "total": 3300}},
        "error": "agent-3 exited",
    }
    console = Console(width=300, record=True)
    console.print(realism_table(result))
    text = console.export_text()
    assert "VirtualService edit -> RDS" in text and "2.00x" in text and "agent-3 exited" in text
