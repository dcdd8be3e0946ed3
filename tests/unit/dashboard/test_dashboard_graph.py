"""Graph folding and health thresholds of the dashboard."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish.dashboard.graph import build_graph, health


def _sample(value: float, **labels: str) -> dict[str, Any]:
    base = {
        "source_workload": "productpage-v1",
        "source_workload_namespace": "default",
        "destination_workload": "reviews-v1",
        "destination_service_name": "reviews",
        "destination_service_namespace": "default",
    }
    return {"metric": {**base, **labels}, "value": [0, str(value)]}


@pytest.mark.parametrize(
    ("rps", "errors", "expected"),
    [
        (0.0, 0.0, "idle"),
        (100.0, 0.0, "healthy"),
        (100.0, 0.09, "healthy"),
        (100.0, 0.1, "degraded"),
        (100.0, 9.9, "degraded"),
        (100.0, 10.0, "failing"),
    ],
)
def test_health_uses_kiali_thresholds(rps: float, errors: float, expected: str) -> None:
    assert health(rps, errors) == expected


def test_edge_folds_codes_latency_and_mtls() -> None:
    mtls = {"connection_security_policy": "mutual_tls", "request_protocol": "http"}
    graph = build_graph(
        [_sample(9.0, response_code="200", **mtls), _sample(1.0, response_code="503", **mtls)],
        [_sample(4.5)],
        [_sample(80.0)],
        [],
    )
    (edge,) = graph["edges"]
    assert edge["source"] == "default/productpage-v1"
    assert edge["target"] == "default/reviews-v1"
    assert edge["rps"] == 10.0
    assert edge["error_percent"] == 10.0
    assert edge["health"] == "failing"
    assert (edge["p50_ms"], edge["p99_ms"]) == (4.5, 80.0)
    assert edge["mtls"] is True
    ids = {n["id"] for n in graph["nodes"]}
    assert ids == {"default/productpage-v1", "default/reviews-v1", "svc:default/reviews"}


def test_mixed_security_policy_gets_no_padlock() -> None:
    graph = build_graph(
        [
            _sample(1.0, response_code="200", connection_security_policy="mutual_tls"),
            _sample(1.0, response_code="200", connection_security_policy="none"),
        ],
        [],
        [],
        [],
    )
    assert graph["edges"][0]["mtls"] is False


def test_tcp_only_edge_and_nan_latency() -> None:
    graph = build_graph(
        [],
        [{"metric": _sample(0)["metric"], "value": [0, "NaN"]}],
        [],
        [_sample(2048.0, connection_security_policy="mutual_tls")],
    )
    (edge,) = graph["edges"]
    assert edge["protocol"] == "tcp"
    assert edge["tcp_bytes_per_s"] == 2048.0
    assert edge["p50_ms"] is None
    assert edge["mtls"] is True
