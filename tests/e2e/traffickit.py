"""Helpers for the traffic end-to-end tests: apps, in-pod clients, an outside server.

Theory of operation. The tests run meshes on bridge ``pfe2p`` (pods in
``198.18.242.0/24``, the bridge being ``.1``). ``APPS`` holds the Services and
Workloads: two versions each of the gRPC and the server-first TCP echo
samples, three replicas of the HTTP echo app and an idle ``sleep`` pod that
the tests call from. ``in_pod`` runs a small Python program with
``ip netns exec`` in a pod's network namespace, so its connections are
captured by that pod's sidecar exactly like the pod's own app.

``ExternalServer`` is a service outside the mesh: a network namespace of its
own (not created by the mesh, no sidecar) with a veth on the mesh bridge at
``EXTERNAL_IP``, running the HTTP echo app on port 80. It must be stopped
before the mesh goes down (its veth hangs on the mesh's bridge).

``Manifests`` applies manifests for one test and deletes them afterwards;
``sidecar_config`` reads a sidecar's configuration dump, so a test can wait
until a change has reached the proxy instead of guessing with sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from e2ekit import E2EMesh, poll

from lanes import lane_address, lane_bridge, lane_cidr

__all__ = [
    "APPS",
    "BRIDGE",
    "BRIDGE_IP",
    "EXTERNAL_HOST",
    "EXTERNAL_IP",
    "POD_CIDR",
    "SERVICE_CIDR",
    "ExternalServer",
    "Manifests",
    "gateway_stat",
    "in_pod",
    "netns_of",
    "sidecar_config",
]

BRIDGE = lane_bridge("pfe2p")
POD_CIDR = lane_cidr("198.18.242.0/24")
SERVICE_CIDR = lane_cidr("198.19.242.0/24")
BRIDGE_IP = lane_address("198.18.242.1")
# High in the pod range: the mesh hands out pod addresses from the bottom.
EXTERNAL_IP = lane_address("198.18.242.250")
EXTERNAL_HOST = "external.pilotfish.test"
# Names outside the mesh's prefixes ("pfe2p-", "pfv"): the mesh never treats
# them as its own leftovers, and they never look like another mesh's.
_EXT_NETNS = "xt2p-external"
_EXT_VETH_HOST = "xt2p-h"
_EXT_VETH_PEER = "xt2p-c"
_NO_PROXY_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy")


def _workload(name: str, app: str, version: str, module: str, port_name: str, port: int) -> str:
    probe = (
        "{httpGet: {path: /health, port: http}}"
        if port_name == "http"
        else f"{{tcpSocket: {{port: {port_name}}}}}"
    )
    return f"""\
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: default, labels: {{app: {app}, version: {version}}}}}
spec:
  serviceAccount: {app}
  command: [python, -m, pilotfish.samples.{module}, --service, {app}, --version, {version}]
  ports: [{{name: {port_name}, containerPort: {port}}}]
  readinessProbe: {probe}
"""


def _service(name: str, port_name: str, port: int) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default, labels: {{app: {name}}}}}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: {port_name}, port: {port}}}
"""


APPS = "---\n".join(
    [
        _service("grpc-echo", "grpc", 7070),
        _workload("grpc-echo-v1", "grpc-echo", "v1", "grpc_echo", "grpc", 7070),
        _workload("grpc-echo-v2", "grpc-echo", "v2", "grpc_echo", "grpc", 7070),
        _service("tcp-echo", "tcp-echo", 9000),
        _workload("tcp-echo-v1", "tcp-echo", "v1", "tcp_echo", "tcp-echo", 9000),
        _workload("tcp-echo-v2", "tcp-echo", "v2", "tcp_echo", "tcp-echo", 9000),
        _service("echo", "http", 8080),
        _workload("echo", "echo", "v1", "echo", "http", 8080).replace(
            "spec:\n", "spec:\n  replicas: 3\n", 1
        ),
        """\
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata: {name: sleep, namespace: default, labels: {app: sleep}}
spec:
  serviceAccount: sleep
  command: [python, -c, "import time; time.sleep(10**9)"]
""",
    ]
)


def netns_of(mesh: E2EMesh, pod: str, namespace: str = "default") -> str:
    """The network namespace of a pod (from the mesh's state file)."""
    state = json.loads((mesh.state_dir / "state.json").read_text())
    return str(state["pods"][f"{namespace}/{pod}"]["netns"])


def in_pod(mesh: E2EMesh, pod: str, program: str, payload: Any = None, timeout: float = 90) -> Any:
    """Run ``program`` (Python source) inside ``pod``'s network namespace.

    ``payload`` is given to the program as JSON on stdin; the program prints
    its result as JSON on stdout, which is returned decoded."""
    env = {k: v for k, v in os.environ.items() if k not in _NO_PROXY_ENV}
    proc = subprocess.run(
        ["ip", "netns", "exec", netns_of(mesh, pod), sys.executable, "-c", program],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        raise AssertionError(f"program in {pod} failed ({proc.returncode}): {proc.stderr}")
    return json.loads(proc.stdout)


def sidecar_config(mesh: E2EMesh, pod: str, resource: str) -> str:
    """A pod's sidecar config dump of one kind (``dynamic_active_clusters``, ...), as text."""
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns_of(mesh, pod),
            "curl",
            "-s",
            f"http://127.0.0.1:15000/config_dump?resource={resource}",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout


def gateway_stat(mesh: E2EMesh, gateway: str, name: str) -> int:
    """A counter of a gateway's Envoy (host network); its admin port is in its bootstrap."""
    bootstrap = json.loads(
        (mesh.state_dir / "pods" / gateway / "proxy" / "bootstrap.json").read_text()
    )
    admin = bootstrap["admin"]["address"]["socket_address"]
    url = f"http://{admin['address']}:{admin['port_value']}/stats?filter=" + name
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
    return 0


class Manifests:
    """Applies manifests (``apply``) and deletes them all, newest first, on exit."""

    def __init__(self, mesh: E2EMesh, folder: Path) -> None:
        self._mesh = mesh
        self._folder = folder
        self._files: list[Path] = []

    def apply(self, name: str, text: str) -> Path:
        path = self._folder / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        self._mesh.cli("apply", "-f", str(path))
        if path not in self._files:
            self._files.append(path)
        return path

    def __enter__(self) -> Manifests:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for path in reversed(self._files):
            self._mesh.cli("delete", "-f", str(path), check=False)
        self._files.clear()


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=10)


class ExternalServer:
    """The HTTP echo app (service ``external``, hostname ``external-server``) at
    ``EXTERNAL_IP:80``, in a namespace of its own on the mesh's bridge."""

    def __init__(self, log: Path) -> None:
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._remove_network()  # whatever a crashed earlier run left
        _ip("netns", "add", _EXT_NETNS)
        _ip("link", "add", _EXT_VETH_HOST, "type", "veth", "peer", "name", _EXT_VETH_PEER)
        _ip("link", "set", _EXT_VETH_PEER, "netns", _EXT_NETNS)
        _ip("link", "set", _EXT_VETH_HOST, "master", BRIDGE)
        _ip("link", "set", _EXT_VETH_HOST, "up")
        _ip("-n", _EXT_NETNS, "addr", "add", f"{EXTERNAL_IP}/24", "dev", _EXT_VETH_PEER)
        _ip("-n", _EXT_NETNS, "link", "set", _EXT_VETH_PEER, "up")
        _ip("-n", _EXT_NETNS, "link", "set", "lo", "up")
        with open(self._log, "ab") as out:
            app = ["pilotfish.samples.echo", "--service", "external", "--port", "80"]
            app += ["--hostname", "external-server"]
            self._proc = subprocess.Popen(
                ["ip", "netns", "exec", _EXT_NETNS, sys.executable, "-m", *app],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        poll(lambda: "listening on" in self._log.read_text(), "the external server", 30)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._remove_network()

    def _remove_network(self) -> None:
        # Deleting the namespace destroys the peer, and with it the host end.
        _ip("netns", "delete", _EXT_NETNS, check=False)
        _ip("link", "delete", _EXT_VETH_HOST, check=False)

    def __enter__(self) -> ExternalServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
