"""Observability of a transparent Bookinfo mesh under the demo profile.

Metrics, Prometheus, traces, access logs and the dashboard, checked the way a
user sees them. One mesh (``demo_mesh``) serves every test of this module.
"""

from __future__ import annotations

import json

import pytest
from e2ekit import E2EMesh, http_get, poll

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(600)]


def test_demo_mesh_serves_productpage(demo_mesh: E2EMesh) -> None:
    status, _ = http_get(demo_mesh.ingress + "/productpage")
    assert status == 200


# -- telemetry-api: access logs and the Telemetry API -----------------------------------


def _json_log_lines(mesh: E2EMesh, workload: str) -> list[dict[str, object]]:
    out = mesh.cli("logs", workload, "--sidecar").stdout
    lines = []
    for line in out.splitlines():
        text = line.split("] ", 1)[1] if line.startswith("[") else line
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def test_access_logs_are_json_lines_with_istio_fields(demo_mesh: E2EMesh) -> None:
    status, _ = http_get(demo_mesh.ingress + "/productpage?telemetry-api=json")
    assert status == 200

    def logged() -> dict[str, object] | None:
        for entry in _json_log_lines(demo_mesh, "productpage-v1"):
            if entry.get("path") == "/productpage?telemetry-api=json":
                return entry
        return None

    def tail() -> str:
        return demo_mesh.cli("logs", "productpage-v1", "--sidecar", "--tail", "15").stdout

    entry = poll(
        logged, "productpage's sidecar to log the request as JSON", deadline=30, context=tail
    )
    assert entry["method"] == "GET" and entry["response_code"] == 200
    assert {"start_time", "upstream_cluster", "request_id", "duration"} <= set(entry)
