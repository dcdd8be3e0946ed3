"""The data-plane benchmark's pure parts: reading hey's summary, percentiles, accounting.

The hey samples under ``data/`` are real output of Debian's hey 0.1.4 against the
echo app (1000 rps over 4 connections with 1 KB bodies; ``?status=503``; a port
nobody listens on). The benchmark itself is not run here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level package beside `src`, not installed
    sys.path.insert(0, str(ROOT))

from bench.loadgen import LoadResult, parse_hey_output, percentile, summarize  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "testdata" / "bench"


def _sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_parses_a_successful_fixed_rate_run() -> None:
    report = parse_hey_output(_sample("hey_1000rps.txt"))
    assert report.total_s == pytest.approx(3.0041)
    assert report.requests_per_s == pytest.approx(991.9656)
    assert report.percentiles_s == {
        10: 0.0002,
        25: 0.0003,
        50: 0.0004,
        75: 0.0006,
        90: 0.0007,
        95: 0.0008,
        99: 0.0013,
    }
    assert report.status_counts == {200: 2980}
    assert report.errors == {}


def test_a_percentile_hey_has_no_sample_for_is_absent() -> None:
    # With 20 requests hey prints "0% in 0.0000 secs" in place of the 99th percentile.
    report = parse_hey_output(_sample("hey_503.txt"))
    assert report.status_counts == {503: 20}
    assert 99 not in report.percentiles_s
    assert report.percentiles_s[50] == pytest.approx(0.0012)
    assert 0 not in report.percentiles_s


def test_transport_errors_are_counted_by_message() -> None:
    report = parse_hey_output(_sample("hey_refused.txt"))
    assert report.status_counts == {}
    assert report.percentiles_s == {}
    assert len(report.errors) == 1
    ((message, count),) = report.errors.items()
    assert count == 10
    assert "connection refused" in message


def test_unrecognised_text_yields_nothing() -> None:
    report = parse_hey_output("hey: something went wrong\n")
    assert report.total_s is None
    assert report.percentiles_s == {} and report.status_counts == {}


def test_nearest_rank_percentile() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0.5) == 1.0
    # Ten values: the 99th percentile is the largest, the 50th the fifth.
    ten = [float(v) for v in range(10, 110, 10)]
    assert percentile(ten, 99) == 100.0
    assert percentile(ten, 50) == 50.0
    assert percentile(ten, 51) == 60.0
    assert percentile([7.0], 50) == 7.0
    assert percentile([], 50) is None


@pytest.mark.parametrize("pct", [0, -1, 101])
def test_percentile_out_of_range_is_rejected(pct: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], pct)


def test_summarize_sorts_and_reports_milliseconds() -> None:
    latencies = [0.003, 0.001, 0.002] * 10 + [0.050]  # 31 samples, one slow
    summary = summarize(latencies)
    assert summary["p50"] == pytest.approx(2.0)
    assert summary["p90"] == pytest.approx(3.0)
    assert summary["p99"] == pytest.approx(50.0)
    assert summarize([]) == {"p50": None, "p90": None, "p99": None}


def test_load_result_counts_non_200_and_transport_errors_as_failed() -> None:
    result = LoadResult(
        generator="hey",
        duration_s=2.0,
        requests=10,
        status_counts={"200": 8, "503": 2},
        errors={"connection refused": 3},
        latency_ms={"p50": 1.0, "p90": 2.0, "p99": 3.0},
        resolution_ms=0.1,
    )
    assert (result.ok, result.failed) == (8, 5)
    data = result.as_dict()
    assert data["achieved_rps"] == pytest.approx(5.0)
    assert data["ok_rps"] == pytest.approx(4.0)
    assert data["failed"] == 5
