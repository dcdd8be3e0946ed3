"""Restart decisions, readiness and status reporting of a pod (pure parts)."""

from __future__ import annotations

import json

import pytest

from pilotfish.runtime.pod_lifecycle import (
    PodStatus,
    completion_phase,
    pod_ready,
    should_restart,
)


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("Always", -9, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("OnFailure", -9, True),
        ("Never", 0, False),
        ("Never", 1, False),
    ],
)
def test_should_restart(policy: str, code: int, restart: bool) -> None:
    assert should_restart(policy, code) is restart  # type: ignore[arg-type]


def test_completion_phase() -> None:
    assert completion_phase(0) == "Succeeded"
    assert completion_phase(1) == "Failed"
    assert completion_phase(-15) == "Failed"


def test_pod_ready_needs_every_condition() -> None:
    good = dict(
        phase="Running", stopping=False, app_running=True, sidecar_ready=True, probe_ready=True
    )
    assert pod_ready(**good)  # type: ignore[arg-type]
    for key, bad in [
        ("phase", "Pending"),
        ("phase", "Succeeded"),
        ("stopping", True),
        ("app_running", False),
        ("sidecar_ready", False),
        ("probe_ready", False),
    ]:
        assert not pod_ready(**{**good, key: bad}), key  # type: ignore[arg-type]


def test_status_json_round_trips() -> None:
    status = PodStatus(
        name="echo-0",
        workload="echo",
        namespace="default",
        ip="127.77.0.2",
        phase="Running",
        ready=True,
        restarts=2,
        sidecar_ready=True,
        app_pid=123,
        sidecar_pid=None,
        started_at=1700000000.5,
        last_exit_code=-9,
        message="app exited with code -9; restarting in 0.2s",
    )
    data = json.loads(json.dumps(status.to_json()))
    assert data == {
        "name": "echo-0",
        "workload": "echo",
        "namespace": "default",
        "ip": "127.77.0.2",
        "phase": "Running",
        "ready": True,
        "restarts": 2,
        "sidecar_ready": True,
        "app_pid": 123,
        "sidecar_pid": None,
        "started_at": 1700000000.5,
        "last_exit_code": -9,
        "message": "app exited with code -9; restarting in 0.2s",
    }
    assert PodStatus(**data) == status
