"""The Prometheus addon's configuration and file-discovered targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pilotfish.runtime.addons import AddonError, AddonSpec, parse_addons
from pilotfish.runtime.prometheus_addon import (
    ScrapeTarget,
    prometheus_spec,
    render_targets,
    write_targets,
)
from pilotfish.runtime.settings import RuntimeSettings


def test_targets_carry_namespace_pod_and_pod_labels() -> None:
    target = ScrapeTarget(
        "198.18.0.5:15020",
        "default",
        "reviews-v2-0",
        (("app", "reviews"), ("version", "v2"), ("app.kubernetes.io/name", "reviews")),
    )
    [group] = json.loads(render_targets([target]))
    assert group["targets"] == ["198.18.0.5:15020"]
    assert group["labels"] == {
        "app": "reviews",
        "version": "v2",
        "app_kubernetes_io_name": "reviews",
        "namespace": "default",
        "pod": "reviews-v2-0",
        "pod_name": "reviews-v2-0",
    }


def test_targets_file_is_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    a = ScrapeTarget("198.18.0.5:15020", "default", "a-0")
    b = ScrapeTarget("198.18.0.6:15020", "default", "b-0")
    assert write_targets(path, [a, b]) is True
    assert write_targets(path, [b, a]) is False  # same set, same file
    assert write_targets(path, [a]) is True
    assert [g["labels"]["pod"] for g in json.loads(path.read_text())] == ["a-0"]


def test_config_scrapes_control_plane_pods_and_itself(tmp_path: Path) -> None:
    spec = prometheus_spec(tmp_path / "prom", 19090, "127.0.0.1:15014", scrape_interval_s=5)
    config = yaml.safe_load((tmp_path / "prom" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pilotfish-control-plane"]["static_configs"] == [{"targets": ["127.0.0.1:15014"]}]
    pods = jobs["kubernetes-pods"]
    assert pods["metrics_path"] == "/stats/prometheus"
    assert pods["file_sd_configs"][0]["files"] == [str(tmp_path / "prom" / "targets.json")]
    assert config["global"]["scrape_interval"] == "5s"
    assert "--web.listen-address=127.0.0.1:19090" in spec.argv
    assert spec.ready_url == "http://127.0.0.1:19090/-/ready"
    assert json.loads((tmp_path / "prom" / "targets.json").read_text()) == []


def test_addon_names_are_checked_and_ordered() -> None:
    assert parse_addons("dashboard, prometheus") == ("prometheus", "dashboard")
    with pytest.raises(AddonError, match=r"unknown addon.*grafana"):
        parse_addons("prometheus,grafana")


def test_profile_picks_addons_unless_given() -> None:
    assert RuntimeSettings(profile="demo").enabled_addons == ("prometheus", "tracing", "dashboard")
    assert RuntimeSettings(profile="default").enabled_addons == ()
    assert RuntimeSettings(profile="demo", addons=()).enabled_addons == ()


def test_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    spec = AddonSpec("prometheus", ("no-such-prometheus-binary",), "", "", tmp_path)
    with pytest.raises(AddonError, match="no-such-prometheus-binary not found"):
        spec.check_program()
