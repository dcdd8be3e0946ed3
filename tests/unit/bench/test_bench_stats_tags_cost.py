"""The stats-logger probe's Envoy config: each variant is what its name says; Envoy loads it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bench.stats_tags_cost import VARIANTS, _bootstrap, probe_table
from rich.console import Console

from pilotfish.envoy_binary import find_envoy
from pilotfish.packed_labels import PACKED_TAG


def _hcms(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        listener["name"]: listener["filter_chains"][0]["filters"][0]["typed_config"]
        for listener in config["static_resources"]["listeners"]
    }


def _tag_counts(hcm: dict[str, Any]) -> list[int]:
    """Tags of each stat of each logger."""
    return [
        len(stat["stat"].get("tags", []))
        for log in hcm.get("access_log", [])
        for stat in log["typed_config"].get("counters", [])
        + log["typed_config"].get("histograms", [])
    ]


def test_variants_differ_in_what_they_name_and_envoy_accepts_them(tmp_path: Path) -> None:
    config = _bootstrap(19000, {name: 19001 + i for i, name in enumerate(VARIANTS)}, "x" * 1024)
    hcms = _hcms(config)
    assert list(hcms) == list(VARIANTS)
    assert _tag_counts(hcms["none"]) == []
    # The reference layout: Istio's 24 labels as tags (25 for gRPC), four stats for HTTP.
    assert set(_tag_counts(hcms["tags24"])) == {24, 25}
    assert _tag_counts(hcms["literal24"]) == _tag_counts(hcms["tags24"])
    assert set(_tag_counts(hcms["no_constants"])) == {16, 17}
    assert set(_tag_counts(hcms["packed1"])) == {1}
    assert len(_tag_counts(hcms["stats1"])) == 2  # one stat in each of the two loggers
    literal = [
        tag["value_format"]
        for log in hcms["literal24"]["access_log"]
        for stat in log["typed_config"]["counters"] + log["typed_config"]["histograms"]
        for tag in stat["stat"]["tags"]
    ]
    assert literal and not any("%" in value for value in literal)
    real = hcms["real"]["access_log"][0]["typed_config"]["counters"][0]["stat"]["tags"]
    assert [t["name"] for t in real] == [PACKED_TAG]
    assert "tracing" in hcms["tracer"] and "access_log" not in hcms["tracer"]
    assert len(hcms["peer_headers"]["http_filters"]) == 3
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_table_shows_each_variant_against_none() -> None:
    summary = {
        "none": {"median": 60.0, "min": 58.0, "max": 63.0, "requests_per_s": 9000.0, "non_200": 0},
        "tags24": {
            "median": 85.0,
            "min": 80.0,
            "max": 90.0,
            "requests_per_s": 7000.0,
            "non_200": 0,
        },
    }
    for entry in summary.values():
        entry["added_us"] = entry["median"] - 60.0
    result = {
        "parameters": {"rounds": 3},
        "summary": summary,
        "load_average_before": [1.0, 2.0, 3.0],
    }
    console = Console(width=200, record=True)
    console.print(probe_table(result))
    text = console.export_text()
    assert "85.0 [80.0-90.0]" in text and "+25.0" in text and "1.00 2.00 3.00" in text


def test_command_line_defaults_are_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bench.stats_tags_cost as probe

    seen: list[probe.ProbeParams] = []

    def fake_run(params: probe.ProbeParams, log: object = None) -> dict[str, Any]:
        seen.append(params)
        return {"error": "not run"}

    monkeypatch.setattr(probe, "run_probe", fake_run)
    monkeypatch.setattr(probe, "write_result", lambda name, payload: tmp_path / f"{name}.json")
    assert probe.main(["--rounds", "2"]) == 1
    assert seen == [probe.ProbeParams(rounds=2)]
