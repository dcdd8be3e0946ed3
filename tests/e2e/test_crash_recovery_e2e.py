"""A supervisor killed with -9 leaves no trace once `down` or a new `up` runs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from e2ekit import (
    SAMPLES,
    E2EMesh,
    free_port,
    host_leftovers,
    http_get,
    poll,
    processes_mentioning,
    require_root,
)

from lanes import lane_bridge

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(600)]
BRIDGE = lane_bridge("pfe2c")


def _supervisor(mesh: E2EMesh) -> int:
    state = json.loads((mesh.state_dir / "state.json").read_text())
    return int(state["pid"])


def test_up_after_a_crash_and_down_leave_nothing(tmp_path: Path) -> None:
    require_root()
    mesh = E2EMesh(tmp_path / "state", "transparent", free_port(), free_port(), free_port(), BRIDGE)
    try:
        mesh.up(SAMPLES / "bookinfo.yaml", profile="minimal")
        first = _supervisor(mesh)
        os.kill(first, signal.SIGKILL)
        poll(lambda: not os.path.exists(f"/proc/{first}"), "the supervisor to die")
        # Its pods, namespaces and rules are still there: that is what a crash leaves.
        assert host_leftovers(BRIDGE)

        # A new `up` cleans the leftovers and starts the mesh again.
        mesh.up(SAMPLES / "bookinfo.yaml", SAMPLES / "networking" / "bookinfo-gateway.yaml")
        assert _supervisor(mesh) != first
        # Other settings (profile and manifests): nothing is adopted, all is replaced.
        log = (mesh.state_dir / "logs" / "supervisor.log").read_text(errors="replace")
        assert "not adopting the earlier run's pods (the settings differ" in log
        pods = mesh.pods()
        assert sorted(p["name"] for p in pods if not p.get("gateway")) == [
            "details-v1-0",
            "productpage-v1-0",
            "ratings-v1-0",
            "reviews-v1-0",
            "reviews-v2-0",
            "reviews-v3-0",
        ]
        status, _ = http_get(mesh.ingress + "/productpage")
        assert status == 200

        # Crash again, then `down` alone cleans up.
        second = _supervisor(mesh)
        os.kill(second, signal.SIGKILL)
        poll(lambda: not os.path.exists(f"/proc/{second}"), "the supervisor to die")
    finally:
        mesh.cli("down", check=False)
    assert host_leftovers(BRIDGE) == []
    poll(lambda: processes_mentioning(str(mesh.state_dir)) == [], "processes to be gone", 10)
    assert processes_mentioning("pilotfish.samples.bookinfo", mesh.state_dir) == []
