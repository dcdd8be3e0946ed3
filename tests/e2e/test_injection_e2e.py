"""Pods out of the mesh by Istio's injection labels: `istio-injection=disabled` on a
Namespace, `sidecar.istio.io/inject: "false"` on a pod.

One transparent mesh (mTLS on) for the module: namespace ``legacy`` with injection
disabled holds an echo server and a client; ``default`` holds an echo server
with a sidecar (two replicas) and a client pod whose own label opts it out.
What is checked is what a user of Istio's "mutual TLS migration" task observes:
the legacy pods run with no proxy and no capture and hold no mesh identity; a
mesh client calls a legacy server in plaintext; a legacy client reaches a mesh
Service by its cluster IP (balanced over its endpoints) under PERMISSIVE and is
refused under STRICT while the mesh client is not; `down` leaves nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import E2EMesh, down_leaves_nothing, free_port, poll, require_root

from lanes import lane_bridge

BRIDGE = lane_bridge("pfe2j")
PORT = 8080


def _echo(name: str, namespace: str, replicas: int = 1, labels: str = "") -> str:
    return f"""\
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: {namespace}, labels: {{app: {name}, version: v1{labels}}}}}
spec:
  replicas: {replicas}
  serviceAccount: {name}
  command: ["python", "-m", "pilotfish.samples.echo", "--service", "{name}",
            "--version", "v1", "--port", "{PORT}"]
  ports: [{{name: http, containerPort: {PORT}}}]
  readinessProbe: {{httpGet: {{path: /health, port: http}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: {PORT}}}]
"""


MANIFEST = "\n---\n".join(
    [
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n"
        "  labels: {istio-injection: disabled}\n",
        _echo("echo", "legacy"),
        _echo("client", "legacy"),
        _echo("echo-mesh", "default", replicas=2),
        _echo("mesh-client", "default"),
        _echo("sleep", "default", labels=', "sidecar.istio.io/inject": "false"'),
    ]
)
OUT_OF_MESH = {"echo-0", "client-0", "sleep-0"}
IN_MESH = {"echo-mesh-0", "echo-mesh-1", "mesh-client-0"}

STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    require_root()
    tmp = tmp_path_factory.mktemp("injection")
    manifest = tmp / "mesh.yaml"
    manifest.write_text(MANIFEST)
    mesh = E2EMesh(tmp / "state", "transparent", free_port(), free_port(), free_port(), BRIDGE)
    try:
        mesh.up(manifest)

        def ready() -> bool:
            rows = {p["name"]: p for p in mesh.pods()}
            return all(rows.get(n, {}).get("ready") for n in OUT_OF_MESH | IN_MESH)

        poll(ready, "every pod to be ready", deadline=90)
        yield mesh
    finally:
        down_leaves_nothing(mesh, BRIDGE)


def _netns(mesh: E2EMesh, namespace: str, pod: str) -> str:
    state = json.loads((mesh.state_dir / "state.json").read_text())
    return str(state["pods"][f"{namespace}/{pod}"]["netns"])


def _in_netns(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=15
    )


def _call(mesh: E2EMesh, namespace: str, pod: str, url: str) -> tuple[str, dict[str, object]]:
    """(HTTP status, echoed JSON) of a request made inside ``pod``'s netns ("000": no
    answer). Its traffic is what the pod's app would send: captured by its sidecar
    if it has one, else on its own."""
    out = _in_netns(
        _netns(mesh, namespace, pod), "curl", "-s", "-m", "3", "-w", "\n%{http_code}", url
    )
    body, _, status = out.stdout.rpartition("\n")
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        doc = {}
    return status.strip(), doc if isinstance(doc, dict) else {}


def _apply(mesh: E2EMesh, tmp: Path, text: str) -> Path:
    path = tmp / f"obj-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    mesh.cli("apply", "-f", str(path))
    return path


def test_pods_out_of_the_mesh_have_no_proxy_no_capture_and_no_identity(mesh: E2EMesh) -> None:
    rows = {p["name"]: p for p in mesh.pods()}
    assert {n for n, p in rows.items() if p.get("dataplane") == "none"} == OUT_OF_MESH
    assert {n for n, p in rows.items() if p.get("dataplane") == "sidecar"} == IN_MESH
    for name in OUT_OF_MESH:
        assert rows[name]["identity"] == "", rows[name]
    for name in IN_MESH:
        assert rows[name]["identity"].startswith("spiffe://cluster.local/ns/default/sa/")
    for namespace, pod in (("legacy", "echo-0"), ("legacy", "client-0"), ("default", "sleep-0")):
        netns = _netns(mesh, namespace, pod)
        pids = subprocess.run(
            ["ip", "netns", "pids", netns], capture_output=True, text=True, check=True
        ).stdout.split()
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids]
        assert commands and not any(b"envoy" in c for c in commands), (pod, commands)
        nat = _in_netns(netns, "iptables", "-t", "nat", "-S").stdout
        assert "PF_INBOUND" not in nat and "REDIRECT" not in nat, nat
    # The mesh pods' traffic is captured as before.
    nat = _in_netns(_netns(mesh, "default", "mesh-client-0"), "iptables", "-t", "nat", "-S")
    assert "PF_INBOUND" in nat.stdout


def test_a_mesh_client_calls_a_legacy_server_in_plaintext(mesh: E2EMesh) -> None:
    # The legacy endpoint has no tlsMode label, so the client's sidecar sends
    # plaintext; TLS bytes would get no JSON answer from the bare echo server.
    status, doc = _call(mesh, "default", "mesh-client-0", f"http://echo.legacy:{PORT}/")
    assert status == "200" and doc.get("service") == "echo", (status, doc)
    headers = {str(k).lower() for k in dict(doc.get("headers") or {})}  # type: ignore[arg-type]
    assert "x-forwarded-client-cert" not in headers


def test_a_legacy_client_reaches_mesh_services_by_cluster_ip_until_strict(
    mesh: E2EMesh, tmp_path: Path
) -> None:
    url = f"http://echo-mesh.default:{PORT}/"

    def hosts() -> set[str]:
        seen = set()
        for _ in range(12):
            status, doc = _call(mesh, "legacy", "client-0", url)
            assert status == "200", (status, doc)
            seen.add(str(doc.get("hostname")))
        return seen

    # Balanced over both endpoints (12 calls miss one with probability 2 * 2**-12).
    assert hosts() == {"echo-mesh-0", "echo-mesh-1"}
    # A pod of a sidecar namespace, out by its own label, too.
    assert _call(mesh, "default", "sleep-0", url)[0] == "200"

    strict = _apply(mesh, tmp_path, STRICT)
    try:
        poll(
            lambda: _call(mesh, "legacy", "client-0", url)[0] == "000",
            "the legacy client to be refused under STRICT",
            deadline=15,
        )
        assert _call(mesh, "default", "sleep-0", url)[0] == "000"
        # In-mesh callers still get through, in mTLS.
        assert _call(mesh, "default", "mesh-client-0", url)[0] == "200"
    finally:
        mesh.cli("delete", "-f", str(strict))
    poll(
        lambda: _call(mesh, "legacy", "client-0", url)[0] == "200",
        "the legacy client to get through again under PERMISSIVE",
        deadline=15,
    )
