"""Adoption decisions: recorded state + live process facts -> adopt or kill."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pilotfish.api.base import ObjectMeta
from pilotfish.api.resource import Resource
from pilotfish.api.runtime.workload import WorkloadSpec
from pilotfish.runtime.adoption import (
    STATE_VERSION,
    PodFacts,
    decide_gateway,
    decide_pod,
    pod_facts,
    run_fingerprint,
    why_not_adopt,
    workload_hash,
)
from pilotfish.runtime.process import ProcessRecord
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import MeshState

SETTINGS = RuntimeSettings(manifests=("/m/bookinfo.yaml",), state_dir=Path("/s"))
ENTRY: dict[str, Any] = {
    "ip": "198.18.0.2",
    "netns": "pf-details-v1-0",
    "namespace": "default",
    "spec": {"name": "details-v1-0"},
    "workload_hash": "abc",
    "phase": "Running",
}
SIDECAR = ProcessRecord(100, 100, 5000)
APP = ProcessRecord(200, 200, 6000)
RECORDS = {"sidecar": SIDECAR, "app": APP}


def _previous(**changes: Any) -> MeshState:
    state = MeshState(pid=1, phase="ready", version=STATE_VERSION, run=run_fingerprint(SETTINGS))
    return dataclasses.replace(state, **changes)


def _facts(**changes: Any) -> PodFacts:
    facts = PodFacts(True, True, {"sidecar": 5000, "app": 6000})
    return dataclasses.replace(facts, **changes)


def test_same_settings_of_a_ready_run_are_adoptable() -> None:
    assert why_not_adopt(_previous(), SETTINGS) is None


@pytest.mark.parametrize(
    ("previous", "reason"),
    [
        (None, "no earlier run"),
        (_previous(phase="failed"), "was failed"),
        (_previous(phase="starting"), "was starting"),
        (_previous(version=0), "another version"),
        (_previous(gateways={"node-proxy": {}}), "ambient pods"),
    ],
)
def test_runs_that_cannot_be_adopted(previous: MeshState | None, reason: str) -> None:
    found = why_not_adopt(previous, SETTINGS)
    assert found is not None and reason in found


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"mode": "explicit"}, "mode ('transparent' -> 'explicit')"),
        ({"bridge": "pf9"}, "bridge"),
        ({"pod_cidr": "10.0.0.0/24"}, "pod_cidr"),
        ({"profile": "demo"}, "profile"),
        ({"mtls": False}, "mtls"),
        ({"xds_protocol": "sotw"}, "xds_protocol"),
        ({"manifests": ("/m/other.yaml",)}, "manifests"),
    ],
)
def test_changed_settings_are_named(change: dict[str, Any], named: str) -> None:
    reason = why_not_adopt(_previous(), dataclasses.replace(SETTINGS, **change))
    assert reason is not None and named in reason


def test_random_ports_are_not_adoptable() -> None:
    settings = dataclasses.replace(SETTINGS, xds_port=0)
    reason = why_not_adopt(_previous(run=run_fingerprint(settings)), settings)
    assert reason is not None and "random" in reason


def test_running_pod_is_adopted_with_its_app() -> None:
    decision = decide_pod(ENTRY, RECORDS, _facts())
    assert decision.adopt and decision.adopt_app and not decision.completed


def test_dead_app_keeps_the_pod_and_restarts_the_app() -> None:
    decision = decide_pod(ENTRY, RECORDS, _facts(start_times={"sidecar": 5000, "app": None}))
    assert decision.adopt and not decision.adopt_app


def test_recycled_app_pid_is_not_adopted() -> None:
    decision = decide_pod(ENTRY, RECORDS, _facts(start_times={"sidecar": 5000, "app": 7777}))
    assert decision.adopt and not decision.adopt_app


@pytest.mark.parametrize(
    ("entry", "records", "facts", "reason"),
    [
        ({**ENTRY, "spec": None}, RECORDS, _facts(), "lacks spec"),
        ({k: v for k, v in ENTRY.items() if k != "workload_hash"}, RECORDS, _facts(), "lacks"),
        (ENTRY, RECORDS, _facts(pod_dir_exists=False), "pod directory"),
        (ENTRY, RECORDS, _facts(netns_exists=False), "network namespace"),
        (ENTRY, {"app": APP}, _facts(), "no sidecar"),
        (ENTRY, RECORDS, _facts(start_times={"sidecar": None, "app": 6000}), "not running"),
        # Same pid, another process: the pid was recycled.
        (ENTRY, RECORDS, _facts(start_times={"sidecar": 5001, "app": 6000}), "not running"),
        (ENTRY, {"sidecar": ProcessRecord(100, 100, None)}, _facts(), "not running"),
    ],
)
def test_inconsistent_pods_are_discarded(
    entry: dict[str, Any],
    records: dict[str, ProcessRecord],
    facts: PodFacts,
    reason: str,
) -> None:
    decision = decide_pod(entry, records, facts)
    assert not decision.adopt
    assert reason in decision.reason


def test_completed_pod_stays_completed() -> None:
    decision = decide_pod({**ENTRY, "phase": "Succeeded"}, {}, _facts(start_times={}))
    assert decision.adopt and decision.completed


def test_explicit_mode_needs_no_namespace() -> None:
    entry = {**ENTRY, "netns": None}
    assert decide_pod(entry, RECORDS, _facts(netns_exists=None)).adopt


def test_gateway_decisions() -> None:
    entry = {"admin_port": 1, "health_port": 2}
    assert decide_gateway(entry, SIDECAR, 5000) is None
    assert "not running" in str(decide_gateway(entry, SIDECAR, 5001))
    assert "not running" in str(decide_gateway(entry, SIDECAR, None))
    assert "no agent" in str(decide_gateway(entry, None, None))
    assert "ports" in str(decide_gateway({}, SIDECAR, 5000))


def test_pod_facts_reads_the_host(tmp_path: Path) -> None:
    import os

    from pilotfish.runtime.process import process_start_time

    me = ProcessRecord(os.getpid(), os.getpid(), process_start_time(os.getpid()))
    facts = pod_facts(ENTRY, {"sidecar": me}, tmp_path, {"pf-details-v1-0"})
    assert facts == PodFacts(True, True, {"sidecar": me.start_time})
    assert pod_facts(ENTRY, {}, tmp_path / "gone", set()).netns_exists is False
    assert pod_facts(ENTRY, {}, tmp_path, None).netns_exists is None


def _workload(command: list[str], labels: dict[str, str]) -> Resource:
    return Resource(
        api_version="pilotfish.io/v1alpha1",
        kind="Workload",
        metadata=ObjectMeta(name="w", namespace="default", labels=labels),
        spec=WorkloadSpec.model_validate({"command": command}),
    )


def test_workload_hash_follows_spec_and_labels() -> None:
    base = workload_hash(_workload(["a"], {"app": "w"}))
    assert workload_hash(_workload(["a"], {"app": "w"})) == base
    assert workload_hash(_workload(["b"], {"app": "w"})) != base
    assert workload_hash(_workload(["a"], {"app": "x"})) != base


def test_a_pod_out_of_the_mesh_is_started_afresh() -> None:
    decision = decide_pod({**ENTRY, "dataplane": "none"}, RECORDS, _facts())
    assert not decision.adopt and "no sidecar" in decision.reason


def test_workload_hash_follows_annotations_and_keeps_the_old_hash_without() -> None:
    spec = WorkloadSpec(command=["python", "-m", "app"])
    bare = Resource("pilotfish.io/v1alpha1", "Workload", ObjectMeta(name="w"), spec)
    noted = Resource(
        "pilotfish.io/v1alpha1",
        "Workload",
        ObjectMeta(name="w", annotations={"sidecar.istio.io/inject": "false"}),
        spec,
    )
    assert workload_hash(bare) != workload_hash(noted)
    # Without annotations the hash is the one of spec and labels alone, as recorded
    # by runs before annotations counted.
    import hashlib
    import json

    doc = {"spec": spec.model_dump(mode="json"), "labels": {}}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    assert workload_hash(bare) == hashlib.sha256(text.encode()).hexdigest()
