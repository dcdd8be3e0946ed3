"""The Sidecar scoping benchmark runs in-process and measures a real reduction."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level package beside `src`, not installed
    sys.path.insert(0, str(ROOT))

from bench.sidecar_scoping import ScopingParams, run_scoping  # noqa: E402


def test_scoping_benchmark_counts_resources() -> None:
    result = run_scoping(ScopingParams(services=12, scoped=2), log=lambda *a: None)
    plain, scoped = result["no_sidecar"], result["sidecar"]
    # Three clusters per service (default + two subsets) + Passthrough, BlackHole,
    # InboundPassthrough and the trace collector.
    assert plain["CDS"]["resources"] == 12 * 3 + 4
    assert scoped["CDS"]["resources"] == 2 * 3 + 4
    assert scoped["EDS"]["resources"] == 2 * 3
    assert scoped["RDS"]["bytes"] < plain["RDS"]["bytes"]
    assert 0 < result["bytes_reduction"]["CDS"] < 1
