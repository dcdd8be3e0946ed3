"""``pilotfish up`` runs a Deployment's container with podman, in its pod's network namespace.

One mesh (transparent, mutual TLS STRICT) over a manifest with a Deployment
whose image is built locally for the test run (``podmankit``), a Service, an
ingress route to it, and a Deployment whose image is nowhere. The container
answers through its sidecar, logs to ``pilotfish logs``, restarts per its
restartPolicy, and leaves no container behind: not when its Deployment is
deleted, not after ``down`` following a supervisor killed with its
``podman run``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2ekit import E2EMesh, down_leaves_nothing, free_port, http_get, require_root
from podmankit import build_echo_image, containers_of, remove_image, require_podman

from lanes import lane_bridge, lane_cidr
from polling import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MISSING_IMAGE = "localhost/pilotfish-test-no-such-image:1"

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 1
  selector:
    matchLabels: {{app: echo}}
  template:
    metadata:
      labels: {{app: echo, version: v1}}
    spec:
      containers:
      - name: echo
        image: {image}
        command: [/usr/bin/python3, -S, -u]
        args: [/app/echo.py, "9080"]
        workingDir: /tmp
        env:
        - {{name: GREETING, value: hello from the container}}
        ports:
        - {{name: http, containerPort: 9080}}
        readinessProbe:
          httpGet: {{path: /ready, port: http}}
"""

MESH = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ghost
spec:
  selector:
    matchLabels: {{app: ghost}}
  template:
    metadata:
      labels: {{app: ghost}}
    spec:
      containers:
      - {{name: ghost, image: {missing}}}
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {{app: echo}}
  ports:
  - {{name: http, port: 80, targetPort: 9080}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: echo-gateway
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8080, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: echo
spec:
  hosts: ["*"]
  gateways: [echo-gateway]
  http:
  - route:
    - destination: {{host: echo, port: {{number: 80}}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls: {{mode: STRICT}}
"""


class PodmanMesh:
    def __init__(
        self, mesh: E2EMesh, podman: str, manifest: Path, deployment: Path, up_output: str
    ) -> None:
        self.mesh = mesh
        self.podman = podman
        self.manifest = manifest
        self.deployment = deployment
        self.up_output = up_output

    def echo(self, path: str) -> dict[str, Any]:
        status, body = http_get(self.mesh.ingress + path)
        assert status == 200, body
        return dict(json.loads(body))

    def served_again(self, path: str) -> None:
        """Wait until the ingress reaches the pod again: a pod that turned ready is
        registered at once, and the gateway gets its endpoint with the next push."""

        def answered() -> bool:
            status, body = http_get(self.mesh.ingress + path)
            return status == 200 and json.loads(body)["pod"] == "echo-0"

        poll(answered, "the ingress to reach the pod again", deadline=30)

    def containers(self) -> list[str]:
        return containers_of(self.podman, self.mesh.state_dir)

    def container_ids(self) -> list[str]:
        return containers_of(self.podman, self.mesh.state_dir, "{{.ID}}")


@pytest.fixture(scope="module")
def podman_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanMesh]:
    require_root()
    podman = require_podman()
    tmp = tmp_path_factory.mktemp("podman")
    image = build_echo_image(podman, f"localhost/pilotfish-test-echo:{uuid.uuid4().hex[:12]}", tmp)
    deployment = tmp / "echo-deployment.yaml"
    deployment.write_text(DEPLOYMENT.format(image=image))
    manifest = tmp / "mesh.yaml"
    manifest.write_text(MESH.format(missing=MISSING_IMAGE))
    bridge = lane_bridge("pfe2p")
    mesh = E2EMesh(
        tmp / "state",
        "transparent",
        free_port(),
        free_port(),
        free_port(),
        bridge,
        pod_cidr=lane_cidr("198.18.212.0/24"),
        service_cidr=lane_cidr("198.19.212.0/24"),
    )
    mesh.extra_up_args = ("--container-runtime", "podman")
    try:
        up = mesh.up(manifest, deployment)
        yield PodmanMesh(mesh, podman, manifest, deployment, up.stdout + up.stderr)
    finally:
        try:
            down_leaves_nothing(mesh, bridge)
            assert containers_of(podman, mesh.state_dir) == []
        finally:
            remove_image(podman, image)


def _kill_supervisor(mesh: E2EMesh) -> None:
    pid = int(json.loads((mesh.state_dir / "state.json").read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    poll(lambda: not os.path.exists(f"/proc/{pid}"), "the supervisor to die")


def test_the_container_answers_through_its_sidecar(podman_mesh: PodmanMesh) -> None:
    mesh = podman_mesh.mesh
    inbound = "http.inbound|9080||.downstream_rq_total"
    before = mesh.envoy_stat("echo-0", inbound)
    answer = podman_mesh.echo("/hello")
    assert answer["pod"] == "echo-0" and answer["path"] == "/hello"
    assert answer["greeting"] == "hello from the container"
    assert answer["cwd"] == "/tmp"  # workingDir
    assert answer["hostname"] == "echo-0"
    assert 200_000 <= answer["uid"] < 265_536  # the pod's own uid, never root
    # The request reached the container through its sidecar's inbound listener...
    poll(lambda: mesh.envoy_stat("echo-0", inbound) > before, "the sidecar to count it", 10)
    # ...and only through it: STRICT mTLS refuses a plain request to the pod's port.
    with pytest.raises(OSError):
        http_get(f"http://{mesh.pod_ip('echo-0')}:9080/direct", timeout=3)
    assert podman_mesh.containers() == [f"{mesh.bridge}-echo-0"]


def test_logs_show_the_containers_output(podman_mesh: PodmanMesh) -> None:
    podman_mesh.echo("/logged")
    mesh = podman_mesh.mesh

    def logged() -> bool:
        out = mesh.cli("logs", "echo-0").stdout
        return "echo-container request /logged" in out

    poll(logged, "the request in the pod's log", deadline=10)
    assert "echo-container listening on 9080 as uid 2" in mesh.cli("logs", "echo-0").stdout


def test_an_image_that_is_not_present_is_named_and_not_pulled(podman_mesh: PodmanMesh) -> None:
    why = (
        f"Deployment default/ghost not run: image {MISSING_IMAGE} is not present locally "
        "and pulling is disabled"
    )
    assert why in " ".join(podman_mesh.up_output.split())
    assert "ghost-0" not in {p["name"] for p in podman_mesh.mesh.pods()}


def test_a_killed_container_is_restarted_per_restart_policy(podman_mesh: PodmanMesh) -> None:
    mesh = podman_mesh.mesh
    name = f"{mesh.bridge}-echo-0"
    subprocess.run(
        [podman_mesh.podman, "kill", "--signal", "KILL", name], check=True, capture_output=True
    )
    poll(lambda: mesh.pod("echo-0")["restarts"] == 1, "the pod to restart its app", 30)
    poll(lambda: mesh.pod("echo-0")["ready"], "the restarted pod to be ready", 30)
    podman_mesh.served_again("/again")
    assert podman_mesh.containers() == [name]


def test_a_restarted_supervisor_adopts_the_running_container(podman_mesh: PodmanMesh) -> None:
    mesh = podman_mesh.mesh
    before = podman_mesh.container_ids()
    _kill_supervisor(mesh)
    assert podman_mesh.echo("/meanwhile")["pod"] == "echo-0"  # the pod keeps serving
    out = mesh.up(podman_mesh.manifest, podman_mesh.deployment)
    assert "adopted 1 running pods (1 ready)" in out.stdout + out.stderr
    assert podman_mesh.container_ids() == before  # the same container, not a new one
    assert mesh.pod("echo-0")["restarts"] == 1  # the restart before, nothing since
    assert podman_mesh.echo("/after")["pod"] == "echo-0"


def test_deleting_the_deployment_removes_its_container(podman_mesh: PodmanMesh) -> None:
    mesh = podman_mesh.mesh
    text = podman_mesh.deployment.read_text()
    # Its manifest holds only the Deployment: deleting it removes that file.
    mesh.cli("delete", "-f", str(podman_mesh.deployment))
    # The app (the container) stops first; the pod is gone once its sidecar drained too.
    poll(lambda: "echo-0" not in {p["name"] for p in mesh.pods()}, "the pod to stop", 30)
    assert podman_mesh.containers() == []
    again = podman_mesh.deployment.with_name("echo-again.yaml")
    again.write_text(text)
    mesh.cli("apply", "-f", str(again))
    poll(lambda: mesh.pod("echo-0")["ready"], "the pod to come back", 60)
    podman_mesh.served_again("/back")


def test_down_after_a_killed_supervisor_removes_the_container(podman_mesh: PodmanMesh) -> None:
    """Last: it ends the mesh. A SIGKILLed ``podman run`` leaves its container running."""
    mesh = podman_mesh.mesh
    pids = json.loads((mesh.state_dir / "pods" / "echo-0" / "pids.json").read_text())
    _kill_supervisor(mesh)
    podman_run = pids["processes"]["app"]["pgid"]
    os.killpg(podman_run, signal.SIGKILL)
    poll(lambda: not os.path.exists(f"/proc/{podman_run}"), "podman run to die")
    assert podman_mesh.containers() == [f"{mesh.bridge}-echo-0"]
    out = mesh.cli("down")
    assert "1 container" in out.stdout + out.stderr
    assert podman_mesh.containers() == []
