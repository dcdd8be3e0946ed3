"""A hostile app inside the mesh tries to break out, in transparent and explicit mode.

Each mesh runs Bookinfo, a gateway TLS credential (so there is a private key to
steal) and ``hostile_app.py`` as an ordinary Workload. The test hands the app
what only the operator knows (the state directory, every port the control
plane listens on, other pods' pids) and asserts every attack is stopped:
reading the CA key, the tokens and Secrets, getting a certificate for another
service account, opening ADS as the gateway on every port the control plane
exposes, joining the proxy group, flushing the capture rules and bypassing the
sidecar, signalling other pods, writing to the config API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2ekit import (
    NETWORKING,
    REPO,
    SAMPLES,
    E2EMesh,
    free_port,
    host_leftovers,
    http_get,
    processes_mentioning,
    require_root,
)
from securitykit import TestPki, tls_secret

from lanes import lane_bridge, lane_cidr
from pilotfish.api.runtime.workload import POD_ID_RANGE
from pilotfish.runtime.network.base import PROXY_GID, PROXY_UID

HOSTILE = REPO / "tests" / "e2e" / "hostile_app.py"
HOSTILE_PORT = 8000
GATEWAY_NODE = "istio-ingressgateway.istio-system"
# Every attack the app makes in both modes; transparent mode adds the capture ones.
COMMON_ATTACKS = {
    "read_ca_key",
    "list_state_dir",
    "read_tokens",
    "read_config_and_secrets",
    "read_gateway_sds",
    "certificate_for_other_account",
    "ads_as_gateway",
    "join_proxy_group",
    "signal_other_pods",
    "read_supervisor_environ",
    "write_config_api",
}
CAPTURE_ATTACKS = {"flush_iptables", "bypass_sidecar"}


def hostile_manifest(gateway_tls_port: int) -> str:
    pki = TestPki("isolation test CA")
    cert, key = pki.issue("bookinfo.example.com", dns=("bookinfo.example.com",))
    secret = tls_secret("gateway-cert", "istio-system", cert, key)
    return (
        secret
        + "---\n"
        + textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: hostile, namespace: default}}
        spec:
          selector: {{app: hostile}}
          ports:
          - {{name: http, port: {HOSTILE_PORT}}}
        ---
        apiVersion: pilotfish.io/v1alpha1
        kind: Workload
        metadata: {{name: hostile, namespace: default, labels: {{app: hostile}}}}
        spec:
          serviceAccount: hostile
          command: ["python", "{HOSTILE}"]
          ports:
          - {{name: http, containerPort: {HOSTILE_PORT}}}
          readinessProbe:
            httpGet: {{path: /, port: http}}
        ---
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: tls-gateway, namespace: istio-system}}
        spec:
          selector: {{istio: ingressgateway}}
          servers:
          - port: {{number: {gateway_tls_port}, name: https, protocol: HTTPS}}
            hosts: ["bookinfo.example.com"]
            tls: {{mode: SIMPLE, credentialName: gateway-cert}}
        """)
    )


@dataclass
class HostileMesh:
    mesh: E2EMesh
    ips: dict[str, str]
    gateway_tls_port: int

    @property
    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.mesh.state_dir / "state.json").read_text()))

    def hostile_url(self, path: str = "/") -> str:
        return f"http://{self.ips['hostile-0']}:{HOSTILE_PORT}{path}"


def _mesh(tmp: Path, mode: str, bridge: str, octet: int) -> Iterator[HostileMesh]:
    require_root()
    mesh = E2EMesh(
        tmp / "state",
        mode,
        free_port(),
        free_port(),
        free_port(),
        bridge,
        pod_cidr=lane_cidr(f"198.18.{octet}.0/24"),
        service_cidr=lane_cidr(f"198.19.{octet}.0/24"),
        explicit_cidr=lane_cidr(f"127.{octet}.0.0/24"),
    )
    tls_port = free_port()
    manifest = tmp / "hostile.yaml"
    manifest.write_text(hostile_manifest(tls_port))
    try:
        mesh.up(SAMPLES / "bookinfo.yaml", NETWORKING / "bookinfo-gateway.yaml", manifest)
        pods = {p["name"]: p for p in mesh.pods() if not p.get("gateway")}
        yield HostileMesh(mesh, {n: str(p["ip"]) for n, p in pods.items()}, tls_port)
    finally:
        mesh.cli("down", check=False)
        assert host_leftovers(bridge) == []
        assert processes_mentioning(str(mesh.state_dir)) == []


@pytest.fixture(scope="module")
def transparent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileMesh]:
    yield from _mesh(tmp_path_factory.mktemp("hostile-t"), "transparent", lane_bridge("pfe2h"), 242)


@pytest.fixture(scope="module")
def explicit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileMesh]:
    yield from _mesh(tmp_path_factory.mktemp("hostile-x"), "explicit", lane_bridge("pfe2y"), 81)


def listening_ports(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on (from ``ss``)."""
    out = subprocess.run(
        ["ss", "-ltnpH"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    found = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        found.append((host.strip("[]").removeprefix("::ffff:"), int(port)))
    return found


def proc_ids(pid: int) -> tuple[int, int, list[int]]:
    """(uid, gid, supplementary groups) of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    gid = int(re.search(r"^Gid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    groups = re.search(r"^Groups:[ \t]*(.*)$", status, re.M).group(1).split()  # type: ignore[union-attr]
    return uid, gid, [int(g) for g in groups]


def envoy_pid(mesh: E2EMesh, pod: str) -> int:
    return int((mesh.state_dir / "pods" / pod / "proxy" / "envoy.pid").read_text())


def attack(hm: HostileMesh, mode: str) -> dict[str, dict[str, Any]]:
    mesh = hm.mesh
    state = hm.state
    supervisor = int(state["pid"])
    pods = {p["name"]: p for p in mesh.pods()}
    exposed = listening_ports(supervisor)
    assert exposed, "the supervisor listens on nothing?"
    if mode == "transparent":
        bridge_ip = _bridge_ip(mesh.bridge)
        # What a pod can reach: sockets on the bridge or on every address.
        targets = [f"{bridge_ip}:{port}" for host, port in exposed if host != "127.0.0.1"]
        targets += [f"127.0.0.1:{port}" for _, port in exposed]  # the pod's own loopback
        secure, config_api = f"{bridge_ip}:{mesh.secure_port}", f"http://{bridge_ip}:{mesh.cp_port}"
    else:
        targets = [f"127.0.0.1:{port}" for _, port in exposed]
        secure, config_api = f"127.0.0.1:{mesh.secure_port}", mesh.control_plane
    targets.append(f"127.0.0.1:{mesh.xds_port}")  # the plain-text xDS port, if it were on
    other = pods["productpage-v1-0"]
    gateway = pods["istio-ingressgateway"]
    body = {
        "state_dir": str(mesh.state_dir.resolve()),
        "root_pem": (mesh.state_dir / "ca" / "root-cert.pem").read_text(),
        "other_token": str(mesh.state_dir / "pods" / "productpage-v1-0" / "proxy" / "ca-token"),
        "other_spiffe": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
        "secure": secure,
        "gateway_node": GATEWAY_NODE,
        "ads_targets": sorted(set(targets)),
        "other_pids": [
            int(other["app_pid"]),
            int(other["sidecar_pid"]),
            envoy_pid(mesh, "productpage-v1-0"),
            envoy_pid(mesh, "istio-ingressgateway"),
            supervisor,
        ],
        "supervisor_pid": supervisor,
        "config_api": config_api,
        "capture": mode == "transparent",
        "mesh_url": "http://details:9080/details/0",
        "iptables": shutil.which("iptables") or "iptables",
    }
    assert gateway["identity"].endswith("/ns/istio-system/sa/istio-ingressgateway-service-account")
    request = urllib.request.Request(
        hm.hostile_url("/attack"), data=json.dumps(body).encode(), method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=120) as resp:
        return dict(json.loads(resp.read()))


def _bridge_ip(bridge: str) -> str:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True
    ).stdout
    return out.split()[3].split("/")[0]


def assert_all_stopped(report: dict[str, dict[str, Any]], expected: set[str]) -> None:
    assert set(report) == expected, sorted(report)
    broken = {name: r["detail"] for name, r in report.items() if not r["stopped"]}
    assert broken == {}, json.dumps(report, indent=2)


def assert_unprivileged(hm: HostileMesh) -> None:
    """Apps run as their pod's own user; agents, Envoys and gateways as the proxy user."""
    pods = [p for p in hm.mesh.pods() if not p.get("gateway")]
    app_uids = set()
    for pod in pods:
        uid, gid, groups = proc_ids(int(pod["app_pid"]))
        assert uid in POD_ID_RANGE and gid == uid and groups == [], (pod["name"], uid, gid)
        assert PROXY_GID not in groups
        app_uids.add(uid)
        assert proc_ids(int(pod["sidecar_pid"]))[:2] == (PROXY_UID, PROXY_GID)
        assert proc_ids(envoy_pid(hm.mesh, pod["name"]))[:2] == (PROXY_UID, PROXY_GID)
    assert len(app_uids) == len(pods), "every pod has a user of its own"
    assert proc_ids(envoy_pid(hm.mesh, "istio-ingressgateway"))[:2] == (PROXY_UID, PROXY_GID)
    # Only the supervisor keeps root.
    assert proc_ids(int(hm.state["pid"]))[0] == 0
    # The state directory is root's alone on the host, too.
    assert (hm.mesh.state_dir.stat().st_mode & 0o777) == 0o700


def test_transparent_hostile_app_is_contained(transparent: HostileMesh) -> None:
    status, body = http_get(transparent.hostile_url("/"))
    assert status == 200
    ids = json.loads(body)
    assert ids["uid"] in POD_ID_RANGE and ids["groups"] == []
    assert_unprivileged(transparent)
    report = attack(transparent, "transparent")
    assert_all_stopped(report, COMMON_ATTACKS | CAPTURE_ATTACKS)
    # Bookinfo still works for everyone else.
    status, _ = http_get(transparent.mesh.ingress + "/productpage")
    assert status == 200


def test_transparent_plaintext_xds_is_off(transparent: HostileMesh) -> None:
    ports = listening_ports(int(transparent.state["pid"]))
    assert transparent.mesh.xds_port not in {port for _, port in ports}
    # What pods can reach on the bridge: the CA (TLS, token) and xDS over mTLS, only.
    on_bridge = {port for host, port in ports if host not in ("127.0.0.1", "::1")}
    assert on_bridge == {transparent.mesh.secure_port, transparent.mesh.xds_mtls_port}


def test_explicit_hostile_app_is_contained(explicit: HostileMesh) -> None:
    status, body = http_get(explicit.hostile_url("/"))
    assert status == 200
    assert json.loads(body)["uid"] in POD_ID_RANGE
    assert_unprivileged(explicit)
    report = attack(explicit, "explicit")
    assert_all_stopped(report, COMMON_ATTACKS)
    status, _ = http_get(explicit.mesh.ingress + "/productpage")
    assert status == 200


def test_sandbox_hides_state_from_root_owned_paths(transparent: HostileMesh) -> None:
    """The app's view of the state directory is an empty tmpfs, whatever its host mode."""
    app_pid = int(next(p for p in transparent.mesh.pods() if p["name"] == "hostile-0")["app_pid"])
    root = Path(f"/proc/{app_pid}/root")
    # Seen through the app's own mount namespace (root may look, the app may not).
    seen = os.listdir(root / str(transparent.mesh.state_dir.resolve()).lstrip("/"))
    assert seen == []
