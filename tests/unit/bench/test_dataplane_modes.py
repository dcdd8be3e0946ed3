"""The data-plane modes benchmark's pure parts: ratios, targets, smaps parsing, the table.

Nothing is measured here: a mesh needs root and minutes. What must hold is the
arithmetic the verdicts rest on (added latency over direct, the reference
divided by its proxy pairs, targets never "met" when a number is missing), the
PSS/RSS read from ``smaps_rollup``, the manifests' one difference between rows,
the waypoint row's Gateway and label, and a table that shows every row, failed
ones included.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level package beside `src`, not installed
    sys.path.insert(0, str(ROOT))

from bench import dataplane_modes as modes  # noqa: E402
from bench import dataplane_modes_mesh as meshes  # noqa: E402
from bench import dataplane_modes_reference as reference  # noqa: E402
from bench import dataplane_modes_table as table  # noqa: E402
from bench import dataplane_modes_waypoint as waypoints  # noqa: E402

from pilotfish.cli.tables import print_table  # noqa: E402

SMAPS_ROLLUP = """\
55f0c0a00000-7ffd5b5f6000 ---p 00000000 00:00 0                          [rollup]
Rss:               45312 kB
Pss:               20117 kB
Pss_Dirty:         12004 kB
Pss_Anon:          11800 kB
Pss_File:           8317 kB
Pss_Shmem:             0 kB
Shared_Clean:      30000 kB
Private_Dirty:     12000 kB
Referenced:        45000 kB
Anonymous:         11800 kB
Swap:                  0 kB
SwapPss:               0 kB
"""


def _row(p50: float, p90: float, p99: float, **extra: Any) -> dict[str, Any]:
    return {"latency_ms": {"p50": p50, "p90": p90, "p99": p99}, **extra}


def test_parse_smaps_rollup_reads_pss_and_rss_not_their_variants() -> None:
    assert meshes.parse_smaps_rollup(SMAPS_ROLLUP) == {"pss_kib": 20117, "rss_kib": 45312}
    assert meshes.parse_smaps_rollup("") == {}
    assert meshes.parse_smaps_rollup("Rss: junk kB\n") == {}


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux only")
def test_memory_of_this_process() -> None:
    groups = meshes.memory_of([os.getpid()])
    assert groups["all"]["processes"] == 1 and groups["envoy"]["processes"] == 0
    assert 0 < groups["all"]["pss_kib"] <= groups["all"]["rss_kib"]


def test_added_latency_is_row_minus_base_per_percentile() -> None:
    added = modes.added_latency(_row(3.0, 5.0, 9.5), _row(1.0, 1.5, 2.5))
    assert added == {"p50": 2.0, "p90": 3.5, "p99": 7.0}
    partial = modes.added_latency({"latency_ms": {"p50": 3.0, "p90": None}}, _row(1, 1, 1))
    assert partial == {"p50": 2.0, "p90": None, "p99": None}
    assert modes.added_latency(None, _row(1, 1, 1)) == {"p50": None, "p90": None, "p99": None}


def test_reference_ratio_divides_by_two_proxy_pairs() -> None:
    # The reference (one proxy pair) adds 0.5 ms; the chain crosses two pairs, so a
    # mesh adding 2 ms costs what two reference pairs would cost, times two.
    ratio = modes.reference_ratio(
        {"p50": 2.0, "p90": 1.0, "p99": None}, {"p50": 0.5, "p90": 0.5, "p99": 1.0}
    )
    assert ratio == {"p50": 2.0, "p90": 1.0, "p99": None}
    assert modes.reference_ratio({"p50": 1.0}, {"p50": 1.0}, pairs=1)["p50"] == 1.0
    # A reference that added nothing measurable gives no ratio, not infinity.
    assert modes.reference_ratio({"p50": 1.0}, {"p50": 0.0})["p50"] is None
    assert modes.reference_ratio({"p50": 1.0}, {"p50": -0.1})["p50"] is None


def _memory(pss_all: int, pss_envoy: int) -> dict[str, Any]:
    return {
        "after_load": {
            "all": {"pss_kib": pss_all, "rss_kib": pss_all * 2, "processes": 12},
            "envoy": {"pss_kib": pss_envoy, "rss_kib": pss_envoy * 2, "processes": 6},
        }
    }


def test_targets_met_and_not_met() -> None:
    rows = {
        "sidecar": {"added_ms": {"p50": 2.0, "p90": 3.0, "p99": 4.0}},
        "ambient": {"added_ms": {"p50": 0.8, "p90": 3.0, "p99": 4.0}},
        "ambient+waypoint": {"added_ms": {"p50": 1.5, "p90": 3.0, "p99": 4.0}},
    }
    memory = {"sidecar": _memory(300_000, 200_000), "ambient": _memory(90_000, 40_000)}
    targets = modes.judge_targets(rows, memory)
    assert targets["ambient_added_p50"]["value"] == pytest.approx(0.4)
    assert targets["ambient_added_p50"]["met"] is True
    assert targets["proxy_memory"]["value"] == pytest.approx(0.3)
    assert targets["proxy_memory"]["met"] is True
    assert targets["proxy_memory"]["envoy_only"] == pytest.approx(0.2)
    assert targets["waypoint_added_p50"]["value"] == pytest.approx(0.75)
    assert targets["waypoint_added_p50"]["met"] is True

    rows["ambient"]["added_ms"]["p50"] = 1.2
    rows["ambient+waypoint"]["added_ms"]["p50"] = 2.5
    memory["ambient"] = _memory(110_000, 40_000)
    targets = modes.judge_targets(rows, memory)
    assert targets["ambient_added_p50"]["met"] is False
    assert targets["proxy_memory"]["met"] is False
    assert targets["waypoint_added_p50"]["met"] is False


def test_targets_not_measured_when_a_number_is_missing() -> None:
    rows = {"sidecar": {"error": "up failed"}, "ambient": {"added_ms": {"p50": 0.1}}}
    memory = {"sidecar": {"error": "up failed"}, "ambient": _memory(1, 1)}
    targets = modes.judge_targets(rows, memory)
    assert targets["ambient_added_p50"]["met"] is None
    assert targets["proxy_memory"]["met"] is None
    assert targets["waypoint_added_p50"]["met"] is None  # no waypoint row at all
    # A sidecar that added nothing cannot be divided by: not measured, never "met".
    rows["sidecar"] = {"added_ms": {"p50": 0.0}}
    assert modes.judge_targets(rows, memory)["ambient_added_p50"]["met"] is None


def test_chain_manifests_differ_only_in_the_namespace_label() -> None:
    direct = meshes.chain_manifest(True, 1024).split("\n---\n")
    mesh = meshes.chain_manifest(False, 1024).split("\n---\n")
    assert direct[1:] == mesh[1:]
    assert json.loads(direct[0])["metadata"]["labels"] == {"istio-injection": "disabled"}
    assert json.loads(mesh[0])["metadata"]["labels"] == {}
    front = next(json.loads(d) for d in mesh if '"front"' in d and "Workload" in d)
    env = {e["name"]: e["value"] for e in front["spec"]["env"]}
    assert env["BACK_URL"] == "http://back:9080/?size=1024"
    # The client pod only runs hey: no ports, no probe (the node proxy must accept that).
    client = next(json.loads(d) for d in mesh if '"client"' in d and "Workload" in d)
    assert "ports" not in client["spec"] and "readinessProbe" not in client["spec"]


def test_the_waypoint_chain_adds_the_gateway_and_the_namespace_label_only() -> None:
    mesh = meshes.chain_manifest(False, 1024).strip().split("\n---\n")
    waypoint = meshes.chain_manifest(False, 1024, waypoint=True).strip().split("\n---\n")
    # Both in the file `up` is given: no connection can predate the label.
    assert waypoint[1:-1] == mesh[1:]
    labels = json.loads(waypoint[0])["metadata"]["labels"]
    assert labels == {"istio.io/use-waypoint": "waypoint"}
    gateway = json.loads(waypoint[-1])
    assert gateway["kind"] == "Gateway" and gateway["metadata"]["name"] == "waypoint"
    assert gateway["metadata"]["namespace"] == "chain"
    assert gateway["spec"]["gatewayClassName"] == "istio-waypoint"
    assert gateway["spec"]["listeners"] == [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]


def test_the_waypoint_is_ready_only_as_a_ready_waypoint_row() -> None:
    ready = {"ready": True, "dataplane": "waypoint"}
    assert not waypoints.waypoint_ready([{"name": "front-0", "ready": True}], "chain")
    assert not waypoints.waypoint_ready([{"name": "waypoint.chain", "ready": False}], "chain")
    # Named after the Gateway, with its namespace outside `default` (as status shows it).
    assert waypoints.waypoint_ready([{"name": "waypoint.chain", **ready}], "chain")
    assert waypoints.waypoint_ready([{"name": "waypoint", **ready}], "default")
    assert not waypoints.waypoint_ready([{"name": "waypoint.shop", **ready}], "chain")


def test_the_waypoint_must_have_carried_the_load() -> None:
    hbone, http = waypoints.WAYPOINT_STATS
    before = {hbone: 4, http: 100}
    # Two crossings per hey request (client -> front, front -> back).
    out = waypoints.check_waypoint(before, {hbone: 8, http: 2100}, {"requests": 1000})
    assert out["per_hey_request"] == pytest.approx(2.0) and out["http_requests"] == 2000
    with pytest.raises(modes.BenchmarkError, match="waypoint"):
        waypoints.check_waypoint(before, {hbone: 8, http: 600}, {"requests": 1000})
    with pytest.raises(modes.BenchmarkError, match="waypoint"):
        waypoints.check_waypoint({hbone: 0, http: 0}, {hbone: 0, http: 2000}, {"requests": 1000})


def test_reference_bootstraps_require_client_certificates(tmp_path: Path) -> None:
    certs = {k: tmp_path / k for k in ("ca", "client_cert", "client_key", "server_cert")}
    certs["server_key"] = tmp_path / "server_key"
    ports = {"client_admin": 1, "server_admin": 2, "listener": 3, "tls": 4, "app": 5}
    client, server = reference.reference_bootstraps(certs, ports)
    upstream = client["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
    assert upstream["common_tls_context"]["tls_certificates"][0]["certificate_chain"] == {
        "filename": str(certs["client_cert"])
    }
    downstream = server["static_resources"]["listeners"][0]["filter_chains"][0]
    assert downstream["transport_socket"]["typed_config"]["require_client_certificate"] is True
    app = server["static_resources"]["clusters"][0]
    assert "transport_socket" not in app  # the last hop, Envoy to the app, is plain


def _payload() -> dict[str, Any]:
    rows: dict[str, Any] = {
        "reference_direct": _row(0.5, 0.7, 1.0, achieved_rps=999.0, failed=0),
        "reference": _row(
            0.9, 1.2, 2.0, achieved_rps=998.0, failed=0, added_ms={"p50": 0.4, "p90": 0.5}
        ),
        "direct": _row(1.5, 2.0, 3.0, achieved_rps=997.0, failed=0),
        "sidecar": _row(
            3.1,
            4.0,
            6.0,
            achieved_rps=990.0,
            failed=3,
            added_ms={"p50": 1.6, "p90": 2.0, "p99": 3.0},
            vs_reference={"p50": 2.0, "p90": 2.0, "p99": None},
        ),
        "ambient": {"error": "pilotfish up (ambient) failed (1): boom"},
        "ambient+waypoint": _row(
            2.9,
            3.5,
            5.0,
            achieved_rps=995.0,
            failed=0,
            added_ms={"p50": 1.2, "p90": 1.5, "p99": 2.0},
            vs_reference={"p50": 1.75, "p90": 1.5, "p99": None},
        ),
    }
    memory = {
        "sidecar": {
            **_memory(300_000, 200_000),
            "ready": {"all": {"pss_kib": 280_000}},
            "cpu_s": {"envoy": 1.5, "all": 2.25},
            "load": {"achieved_rps": 199.5, "failed": 0},
        },
        "ambient": {"error": "pods not ready: ['details-v1-0']"},
    }
    return {
        "parameters": dataclasses.asdict(modes.QUICK),
        "results": {
            "rows": rows,
            "memory": memory,
            "targets": modes.judge_targets(rows, memory),
            "load_average": [1.0, 2.0],
        },
        "error": "ambient: boom",
    }


def _render(payload: dict[str, Any]) -> str:
    console = Console(record=True, width=80, force_terminal=False, color_system=None)
    print_table(console, table.modes_table(payload))
    return console.export_text()


def test_table_shows_every_row_uncut() -> None:
    text = _render(json.loads(json.dumps(_payload(), sort_keys=True)))  # as in a result file
    for label in table._ROW_LABELS.values():
        assert label in text
    assert "0.75x" in text  # ambient+waypoint added p50 / sidecar's (1.2 / 1.6)
    assert "pilotfish up (ambient) failed (1): boom" in text
    assert "2.00x" in text and "1.60" in text  # vs reference, added p50
    assert "292.97" not in text and "293.0" in text  # 300 000 KiB as MiB
    assert "pods not ready" in text
    assert "not measured" in text
    assert "error: ambient: boom" in text
    assert "…" not in text
    # Rows in the chain's order even from a file written with sorted keys.
    positions = [text.index(label) for label in table._ROW_LABELS.values()]
    assert positions == sorted(positions)


def test_table_when_skipped() -> None:
    text = _render({"parameters": {}, "results": {"skipped": "needs root"}})
    assert "skipped: needs root" in text
