"""The data-plane benchmark's namespace arrangements: skipping, and how results are shown.

Nothing is measured here: an arrangement that cannot run (no root, or a load
generator that cannot enter a pod's netns) must say so before creating anything,
and the table must show skipped rows and every added-latency pair.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import pytest
from rich.console import Console

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level package beside `src`, not installed
    sys.path.insert(0, str(ROOT))

from bench import dataplane  # noqa: E402
from bench.dataplane_base import Arrangement, ArrangementSkipped, Rig  # noqa: E402
from bench.dataplane_transparent import BRIDGE, direct_pods, transparent_sidecars  # noqa: E402
from bench.report import dataplane_table  # noqa: E402

from pilotfish.runtime.network.host import link_exists  # noqa: E402


@pytest.mark.parametrize("arrangement", [direct_pods, transparent_sidecars])
def test_python_generator_skips_before_creating_anything(
    arrangement: Arrangement, tmp_path: Path
) -> None:
    params = dataclasses.replace(dataplane.QUICK, load_generator="python")
    rig = Rig(exe=tmp_path / "pilotfish", work=tmp_path, params=params, app_port=1, log=print)
    with contextlib.ExitStack() as stack, pytest.raises(ArrangementSkipped) as info:
        arrangement(rig, stack)
    assert "root" in str(info.value) or "hey" in str(info.value)
    assert not link_exists(BRIDGE)


def _render(numbers: dict[str, object]) -> str:
    payload = {
        "parameters": {"rate": 1000, "connections": 4, "response_bytes": 1024, "duration_s": 5},
        "results": numbers,
        "error": None,
    }
    console = Console(width=200, record=True)
    console.print(dataplane_table(payload))
    return console.export_text()


def test_table_shows_skipped_rows_with_their_reason() -> None:
    run = {"latency_ms": {"p50": 0.5, "p90": 0.8, "p99": 1.1}, "achieved_rps": 999, "failed": 0}
    text = _render(
        {
            "arrangements": {
                "direct": run,
                "transparent_sidecars": {"skipped": "transparent mode needs root"},
            },
            "added_latency": {},
        }
    )
    assert "transparent sidecars" in text and "skipped" in text
    assert "transparent_sidecars skipped: transparent mode needs root" in text


def test_table_shows_every_added_pair_and_each_envoy_by_arrangement() -> None:
    envoy = {"cpu_cores": 0.15, "rss_mib": 66.0, "peak_rss_mib": 66.5}
    run = {
        "latency_ms": {"p50": 1.6, "p90": 2.2, "p99": 3.1},
        "achieved_rps": 999,
        "failed": 0,
        "proxies": {"client": envoy, "server": envoy},
    }
    text = _render(
        {
            "arrangements": {"transparent_sidecars": run},
            "added_latency": {
                "transparent_sidecars - direct": {"p50": 1.1, "p90": 1.4, "p99": 2.0},
                "transparent_sidecars - direct_pods": {"p50": 1.0, "p90": 1.25, "p99": 1.9},
            },
        }
    )
    assert "added transparent - direct " in text
    assert "added transparent - direct pods" in text
    assert "1.25" in text
    assert "client Envoy (transparent)" in text and "server Envoy (transparent)" in text
