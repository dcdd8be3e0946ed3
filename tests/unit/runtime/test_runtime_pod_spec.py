"""PodSpec from a Workload resource as users write it in YAML."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.api.runtime import HTTPGetAction, Probe
from pilotfish.runtime.pod_spec import PodSpec, PodSpecError, PortSpec, ProbeSpec

WORKLOAD = """\
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata:
  name: reviews
  namespace: shop
  labels: {app: reviews, version: v2}
spec:
  replicas: 2
  serviceAccount: bookinfo-reviews
  command: [python, -m, pilotfish.samples.echo, --service, reviews]
  env:
  - {name: COLOR, value: black}
  - {name: EMPTY}
  ports:
  - {name: http, containerPort: 9080}
  - {containerPort: 9443, protocol: TCP}
  readinessProbe:
    httpGet: {path: /healthz, port: http}
    initialDelaySeconds: 2
    periodSeconds: 3
    timeoutSeconds: 4
    failureThreshold: 5
    successThreshold: 2
  restartPolicy: OnFailure
"""


def _load(text: str) -> Resource:
    result = load_text(text, "workload.yaml")
    assert result.ok, result.diagnostics
    (resource,) = result.resources
    return resource


def test_from_workload_reads_every_field() -> None:
    spec = PodSpec.from_workload(_load(WORKLOAD), 1)
    assert spec == PodSpec(
        name="reviews-1",
        workload="reviews",
        namespace="shop",
        command=("python", "-m", "pilotfish.samples.echo", "--service", "reviews"),
        labels=(("app", "reviews"), ("version", "v2")),
        service_account="bookinfo-reviews",
        env=(("COLOR", "black"), ("EMPTY", "")),
        ports=(PortSpec("http", 9080, "TCP"), PortSpec(None, 9443, "TCP")),
        readiness=ProbeSpec("http", 9080, "/healthz", 2, 3, 4, 5, 2),
        restart_policy="OnFailure",
    )
    assert spec.proxy_id == "reviews-1.shop"


def test_defaults_and_tcp_probe() -> None:
    text = """\
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata: {name: job}
spec:
  command: [sh, -c, "exit 0"]
  readinessProbe: {tcpSocket: {port: 7000}}
"""
    spec = PodSpec.from_workload(_load(text), 0)
    assert spec.name == "job-0" and spec.namespace == "default"
    assert spec.restart_policy == "Always" and spec.service_account == "default"
    assert spec.readiness == ProbeSpec("tcp", 7000)
    assert spec.readiness.app_probe().flag() == "tcp:7000"


def test_unknown_probe_port_name_is_an_error() -> None:
    # Validation rejects this in files; a resource built in code can still carry it.
    resource = _load(WORKLOAD)
    probe = Probe(http_get=HTTPGetAction(port="nosuch"))
    bad = replace(resource, spec=resource.spec.model_copy(update={"readiness_probe": probe}))
    with pytest.raises(PodSpecError, match="nosuch"):
        PodSpec.from_workload(bad, 0)


def test_empty_command_is_rejected() -> None:
    with pytest.raises(PodSpecError):
        PodSpec("a-0", "a", "default", ())


def test_recorded_spec_round_trips_through_json() -> None:
    import json

    spec = PodSpec(
        name="reviews-v1-0",
        workload="reviews-v1",
        namespace="default",
        command=("python", "-m", "app"),
        labels=(("app", "reviews"), ("version", "v1")),
        service_account="bookinfo-reviews",
        env=(("A", "1"),),
        ports=(PortSpec("http", 9080),),
        readiness=ProbeSpec("http", 9080, "/health", failure_threshold=2),
        restart_policy="OnFailure",
    )
    assert PodSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    bare = PodSpec(name="a-0", workload="a", namespace="ns", command=("x",))
    assert PodSpec.from_json(json.loads(json.dumps(bare.to_json()))) == bare


@pytest.mark.parametrize(
    "data",
    [{}, {"name": "a", "workload": "a", "namespace": "n", "command": []}, {"name": 1}],
)
def test_malformed_recorded_spec_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(PodSpecError):
        PodSpec.from_json(data)


def test_recorded_spec_with_unknown_restart_policy_is_refused() -> None:
    data = PodSpec(name="a-0", workload="a", namespace="n", command=("x",)).to_json()
    with pytest.raises(PodSpecError, match="restart policy"):
        PodSpec.from_json({**data, "restart_policy": "Sometimes"})
