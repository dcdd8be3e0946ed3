"""Kubernetes workloads whose image no map covers run as containers, when they can."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pilotfish.api.loader import load_text
from pilotfish.runtime.container_workloads import Containers
from pilotfish.runtime.image_map import load_image_map
from pilotfish.runtime.kube_workloads import images_to_check, plan_workloads
from pilotfish.runtime.pod_spec import ContainerImage, PodSpec
from pilotfish.runtime.podman import ABSENT_RECHECK_S, ImagePresence

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo, version: v1}}
    spec:
      serviceAccountName: echo-sa
      restartPolicy: OnFailure
      securityContext: {runAsUser: 4000, runAsGroup: 4000}
      containers:
      - name: echo
        image: localhost/echo:1
        command: [/usr/bin/python3]
        args: [/app/echo.py, "9080"]
        workingDir: /app
        securityContext: {runAsUser: 4001}
        env:
        - {name: GREETING, value: hi}
        - name: FROM_SECRET
          valueFrom: {secretKeyRef: {name: s, key: k}}
        ports:
        - {name: http, containerPort: 9080}
        readinessProbe:
          httpGet: {path: /ready, port: http}
        volumeMounts:
        - {name: certs, mountPath: /etc/echo-certs}
      volumes:
      - name: certs
        secret: {secretName: echo-tls}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: details-v1}
spec:
  selector: {matchLabels: {app: details}}
  template:
    metadata: {labels: {app: details}}
    spec:
      containers:
      - {name: details, image: docker.io/istio/examples-bookinfo-details-v1:1.20.3}
"""
ROOT = Path(__file__).resolve().parents[3]
BOOKINFO_MAP = ROOT / "samples" / "image-maps" / "bookinfo.yaml"


def _resources() -> list:  # type: ignore[type-arg]
    return load_text(MANIFEST, "echo.yaml").resources


def test_a_present_image_runs_as_a_container_workload() -> None:
    present = {"localhost/echo:1"}
    runnable, reasons = plan_workloads(
        _resources(),
        load_image_map(BOOKINFO_MAP),
        Containers(None, lambda image: image in present),
    )
    assert reasons == {}
    echo = next(w for w in runnable if w.name == "echo")
    pods = [PodSpec.from_workload(echo, i) for i in range(echo.spec.replicas)]
    assert [p.name for p in pods] == ["echo-0", "echo-1"]
    pod = pods[0]
    assert pod.container == ContainerImage(
        image="localhost/echo:1",
        command=("/usr/bin/python3",),
        args=("/app/echo.py", "9080"),
        working_dir="/app",
    )
    assert pod.command == ()
    assert pod.namespace == "shop" and pod.service_account == "echo-sa"
    assert dict(pod.labels) == {"app": "echo", "version": "v1"}
    assert pod.restart_policy == "OnFailure"
    # The container's securityContext over the pod's, field by field.
    assert (pod.run_as_user, pod.run_as_group) == (4001, 4000)
    assert dict(pod.env) == {"GREETING": "hi"}  # valueFrom has no source here
    probe = pod.readiness
    assert probe is not None and (probe.port, probe.path) == (9080, "/ready")
    # Secret volumes as for process pods (podman mounts what the runtime writes).
    assert [(v.secret, v.mount_path) for v in pod.secret_volumes] == [
        ("echo-tls", "/etc/echo-certs")
    ]
    # A pod spec survives the state file (adoption reads it back).
    assert PodSpec.from_json(pod.to_json()) == pod


def test_the_image_map_wins_over_the_container_runtime() -> None:
    runnable, _ = plan_workloads(
        _resources(), load_image_map(BOOKINFO_MAP), Containers(None, lambda image: True)
    )
    details = next(w for w in runnable if w.name == "details-v1")
    pod = PodSpec.from_workload(details, 0)
    assert pod.container is None
    assert pod.command[-1] == "pilotfish.samples.bookinfo.details"
    assert images_to_check(_resources(), load_image_map(BOOKINFO_MAP)) == {"localhost/echo:1"}


def test_a_missing_image_is_named_and_never_pulled() -> None:
    _, reasons = plan_workloads(_resources(), None, Containers(None, lambda image: False))
    assert reasons["Deployment shop/echo"] == (
        "not run: image localhost/echo:1 is not present locally and pulling is disabled "
        "(build or load it with podman, or map it with --image-map)"
    )


def test_without_a_usable_runtime_the_reason_says_why() -> None:
    _, reasons = plan_workloads(_resources(), None, Containers("podman is not installed"))
    assert reasons["Deployment shop/echo"] == (
        "not run: image localhost/echo:1 cannot run here (no --image-map given; "
        "no container runtime: podman is not installed)"
    )


def test_several_containers_and_jobs_are_not_run() -> None:
    text = """
apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  containers:
  - {name: a, image: localhost/a}
  - {name: b, image: localhost/b}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      containers: [{name: a, image: localhost/a}]
"""
    resources = load_text(text, "x.yaml").resources
    _, reasons = plan_workloads(resources, None, Containers(None, lambda image: True))
    assert reasons == {
        "Pod default/two": "not run: 2 containers; the local runtime runs one process per pod",
        "Job default/once": (
            "not run: Jobs run to completion, which the local runtime does not support"
        ),
    }


def test_image_presence_is_asked_once_when_present_and_again_later_when_absent(
    tmp_path: Path,
) -> None:
    asked = tmp_path / "asked"
    present = tmp_path / "present"
    now = [100.0]

    def command(*args: str) -> list[str]:
        # Stands in for `podman image exists IMAGE`: logs the question, then answers.
        script = 'echo "$1" >> "$2"; grep -qx "$1" "$3"'
        return ["sh", "-c", script, "sh", args[-1], str(asked), str(present)]

    present.write_text("localhost/a\n")
    images = ImagePresence(command, clock=lambda: now[0])
    assert images.present("localhost/a") is None
    asyncio.run(images.refresh(["localhost/a", "localhost/b"]))
    assert (images.present("localhost/a"), images.present("localhost/b")) == (True, False)
    present.write_text("localhost/a\nlocalhost/b\n")
    asyncio.run(images.refresh(["localhost/a", "localhost/b"]))  # too soon for b
    assert images.present("localhost/b") is False
    now[0] += ABSENT_RECHECK_S
    asyncio.run(images.refresh(["localhost/a", "localhost/b"]))
    assert images.present("localhost/b") is True
    assert sorted(asked.read_text().split()) == ["localhost/a", "localhost/b", "localhost/b"]
