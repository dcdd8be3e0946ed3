"""Istio's names for the stats logger's families, and merging expositions."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pilotfish.agent.config import AgentConfig, ConfigError, parse_app_metrics
from pilotfish.agent.prom_text import istio_names, merge_expositions
from pilotfish.agent.workload_env import workload_labels

ENVOY = """\
# TYPE envoy_istio_requests_total counter
envoy_istio_requests_total{reporter="destination",response_code="200"} 3
# TYPE envoy_server_live gauge
envoy_server_live{} 1
# TYPE envoy_istio_request_duration_milliseconds histogram
envoy_istio_request_duration_milliseconds_bucket{reporter="destination",le="0.5"} 1
envoy_istio_request_duration_milliseconds_sum{reporter="destination"} 4
envoy_istio_request_duration_milliseconds_count{reporter="destination"} 3
"""


def test_stats_logger_families_get_istio_names_and_envoy_stats_keep_theirs() -> None:
    text = istio_names(ENVOY)
    assert "envoy_istio_" not in text
    assert "# TYPE istio_requests_total counter\nistio_requests_total{reporter=" in text
    assert "istio_request_duration_milliseconds_bucket{" in text
    assert "envoy_server_live{} 1" in text
    names = {f.name for f in text_string_to_metric_families(text)}
    assert names == {"istio_requests", "envoy_server_live", "istio_request_duration_milliseconds"}


def test_a_label_value_mentioning_envoy_istio_is_not_rewritten() -> None:
    text = 'envoy_istio_requests_total{source_workload="envoy_istio_x"} 1\n'
    assert istio_names(text) == 'istio_requests_total{source_workload="envoy_istio_x"} 1\n'


def test_merge_keeps_every_source_and_drops_a_family_declared_twice() -> None:
    agent = "# HELP agent_up up\n# TYPE agent_up gauge\nagent_up 1.0\n"
    app = (
        "# TYPE app_hits counter\napp_hits_total 7\n"
        "# TYPE istio_requests_total counter\nistio_requests_total 99\n"
    )
    merged = merge_expositions([istio_names(ENVOY), agent, app])
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    assert {"istio_requests", "envoy_server_live", "agent_up", "app_hits"} <= set(families)
    # The proxy's istio_requests_total wins; the app's copy is left out.
    assert [s.value for s in families["istio_requests"].samples] == [3.0]
    assert "99" not in merged


def test_merge_of_nothing_is_empty() -> None:
    assert merge_expositions(["", "\n"]) == ""


def test_workload_facts_follow_istio_label_precedence() -> None:
    config = AgentConfig(
        name="reviews-v2-0",
        namespace="shop",
        workload="reviews-v2",
        labels=(("app", "reviews"), ("version", "v2")),
    )
    env = workload_labels(config)
    assert env["PILOTFISH_WORKLOAD_NAME"] == "reviews-v2"
    assert env["PILOTFISH_WORKLOAD_NAMESPACE"] == "shop"
    assert env["PILOTFISH_CANONICAL_SERVICE"] == "reviews"
    assert env["PILOTFISH_CANONICAL_REVISION"] == "v2"
    assert env["PILOTFISH_PRINCIPAL"] == "unknown"  # no certificate without a CA


def test_missing_facts_are_unknown_never_empty() -> None:
    env = workload_labels(AgentConfig(name="sleep-0", namespace="default"))
    assert env["PILOTFISH_WORKLOAD_NAME"] == "sleep-0"
    assert env["PILOTFISH_WORKLOAD_APP"] == "unknown"
    assert env["PILOTFISH_CANONICAL_SERVICE"] == "sleep-0"
    assert env["PILOTFISH_CANONICAL_REVISION"] == "latest"
    assert all(env.values())


def test_app_metrics_flag_parses_port_and_path() -> None:
    assert parse_app_metrics("9080:/metrics") == (9080, "/metrics")
    assert parse_app_metrics("15000:stats") == (15000, "/stats")
    for bad in ("metrics", "x:/m", "0:/m", "70000:/m"):
        with pytest.raises(ConfigError, match="PORT:PATH"):
            parse_app_metrics(bad)
