"""Istio's Gateway API samples, unchanged, on ``pilotfish up`` (transparent mode, root).

One mesh for the module: the Python Bookinfo, Istio's ``bookinfo-versions.yaml``
(the per-version Services the samples route to) and
``gateway-api/bookinfo-gateway.yaml``. The Gateway (class ``istio``) gets a
gateway agent of its own, deployed by the runtime on its own address; the
tests reach the product page at the address the Gateway's status reports,
split reviews with the GAMMA route ``route-reviews-90-10.yaml``, check that a
backend in another namespace needs a ReferenceGrant, serve a TLS listener in
Terminate mode (plain TCP to productpage behind it), kill the supervisor
with -9 and check the next one adopts the running gateway, delete the Gateway
and check its agent, address and state entry are gone, and last apply it
again, kill the supervisor and check ``down`` still removes everything.

The tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2ekit import (
    SAMPLES,
    E2EMesh,
    down_leaves_nothing,
    free_port,
    host_leftovers,
    http_get,
    require_root,
)

from lanes import lane_bridge, lane_cidr
from pki import TestCa, serial_of, tls_secret
from polling import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
ISTIO = ROOT / "tests" / "testdata" / "istio-samples" / "bookinfo"
GATEWAY_API = ISTIO / "gateway-api"
GATEWAY = "bookinfo-gateway"
DEPLOYED = "bookinfo-gateway-istio"  # Istio's <gateway>-<class>
BRIDGE = lane_bridge("pfe2g")
MANIFESTS = (SAMPLES / "bookinfo.yaml", ISTIO / "platform" / "kube" / "bookinfo-versions.yaml")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    require_root()
    tmp = tmp_path_factory.mktemp("gateway-api")
    mesh_config = tmp / "mesh.yaml"
    # A short drain: route changes replace listeners' filter chains quickly.
    mesh_config.write_text("defaultConfig:\n  drainDuration: 1s\n")
    m = E2EMesh(
        tmp / "state",
        "transparent",
        free_port(),
        free_port(),
        free_port(),
        BRIDGE,
        pod_cidr=lane_cidr("198.18.246.0/24"),
        service_cidr=lane_cidr("198.19.246.0/24"),
    )
    m.extra_up_args = ("--mesh-config", str(mesh_config))
    try:
        m.up(*MANIFESTS, profile="minimal")
        # Applied to the running mesh (so it can be deleted): deployed when it appears.
        m.cli("apply", "-f", str(GATEWAY_API / "bookinfo-gateway.yaml"))
        yield m
    finally:
        down_leaves_nothing(m, BRIDGE)


def _gateway_status(mesh: E2EMesh) -> dict[str, Any]:
    out = mesh.cli("get", "gtw", GATEWAY, "-o", "yaml").stdout
    doc = yaml.safe_load(out)
    return dict(doc.get("status") or {})


def _address(mesh: E2EMesh) -> str:
    def found() -> str | None:
        addresses = _gateway_status(mesh).get("addresses") or []
        ips = [a["value"] for a in addresses if a.get("type", "IPAddress") == "IPAddress"]
        return ips[0] if ips else None

    return str(poll(found, "the Gateway's status.addresses", deadline=60))


def _state(mesh: E2EMesh) -> dict[str, Any]:
    return dict(json.loads((mesh.state_dir / "state.json").read_text()))


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: after a supervisor crash, its killed
    children wait for whoever inherited them to reap them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _reviews_versions(base: str, n: int) -> Counter[str]:
    """Which reviews version answered each of ``n`` calls through the product page."""
    out: Counter[str] = Counter()
    for _ in range(n):
        status, body = http_get(base + "/api/v1/products/0/reviews")
        out[str(json.loads(body).get("version")) if status == 200 else f"HTTP {status}"] += 1
    return out


def test_deployed_gateway_serves_productpage_at_its_status_address(mesh: E2EMesh) -> None:
    ip = _address(mesh)
    entry = _state(mesh)["gateways"][DEPLOYED]
    assert entry["ip"] == ip and entry["deployment"]["gateway"] == GATEWAY
    row = mesh.pod(DEPLOYED)
    assert row["gateway"] is True and row["namespace"] == "default" and row["ip"] == ip

    def productpage() -> bool:
        status, body = http_get(f"http://{ip}:80/productpage")
        return status == 200 and b"The Comedy of Errors" in body

    poll(productpage, f"the product page at http://{ip}:80", deadline=60)
    # The Service Istio's deployment controller would create, with the listener's port.
    svc = yaml.safe_load(mesh.cli("get", "service", DEPLOYED, "-o", "yaml").stdout)
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert ports == {"status-port": 15021, "http": 80}


def test_gamma_route_splits_reviews_90_10(mesh: E2EMesh) -> None:
    base = f"http://{_address(mesh)}:80"
    mesh.cli("apply", "-f", str(GATEWAY_API / "route-reviews-90-10.yaml"))
    poll(
        lambda: set(_reviews_versions(base, 20)) <= {"v1", "v2"},
        "reviews to settle on v1 and v2",
        deadline=60,
    )
    counts = _reviews_versions(base, 300)
    assert set(counts) <= {"v1", "v2"}, counts
    # Binomial sd at p=0.9, n=300 is 0.017: 4 sd either side.
    assert 0.83 <= counts["v1"] / 300 <= 0.97, counts
    mesh.cli("delete", "-f", str(GATEWAY_API / "route-reviews-90-10.yaml"))


_OTHER_NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata: {name: shelf}
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: shelf}
spec:
  selector: {app: details}
  ports: [{name: http, port: 9080}]
---
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata: {name: details-shelf, namespace: shelf, labels: {app: details}}
spec:
  command: ["python", "-m", "pilotfish.samples.bookinfo.details"]
  ports: [{name: http, containerPort: 9080}]
  readinessProbe: {httpGet: {path: /health, port: http}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shelf-details}
spec:
  parentRefs: [{name: bookinfo-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /details}}]
    backendRefs: [{name: details, namespace: shelf, port: 9080}]
"""

_GRANT = """\
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: default-routes, namespace: shelf}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
"""


def _resolved_refs(mesh: E2EMesh) -> dict[str, Any] | None:
    out = mesh.cli("get", "httproute", "shelf-details", "-o", "yaml").stdout
    status = yaml.safe_load(out).get("status") or {}
    for parent in status.get("parents") or []:
        for condition in parent.get("conditions") or []:
            if condition.get("type") == "ResolvedRefs":
                return dict(condition)
    return None


def test_backend_in_another_namespace_needs_a_reference_grant(
    mesh: E2EMesh, tmp_path: Path
) -> None:
    url = f"http://{_address(mesh)}:80/details/0"
    routes = tmp_path / "shelf.yaml"
    routes.write_text(_OTHER_NAMESPACE)
    mesh.cli("apply", "-f", str(routes))
    poll(
        lambda: any(p["name"] == "details-shelf-0" and p["ready"] for p in mesh.pods()),
        "the other namespace's details pod",
        deadline=90,
    )
    condition = poll(
        lambda: _resolved_refs(mesh), "the route's ResolvedRefs condition", deadline=30
    )
    assert condition["status"] == "False" and condition["reason"] == "RefNotPermitted"
    poll(lambda: http_get(url)[0] == 500, "the refused backend to answer 500", deadline=30)

    grant = tmp_path / "grant.yaml"
    grant.write_text(textwrap.dedent(_GRANT))
    mesh.cli("apply", "-f", str(grant))

    def served() -> bool:
        status, body = http_get(url)
        return status == 200 and b"William Shakespeare" in body

    poll(served, "the granted backend to answer 200", deadline=30)
    granted = _resolved_refs(mesh)
    assert granted is not None and granted["status"] == "True", granted


_TERMINATE = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls-terminate, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - name: tls
    port: 8443
    protocol: TLS
    hostname: shop.example.com
    tls: {mode: Terminate, certificateRefs: [{name: terminate-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: productpage-tcp, namespace: default}
spec:
  parentRefs: [{name: tls-terminate}]
  hostnames: [shop.example.com]
  rules: [{backendRefs: [{name: productpage, port: 9080}]}]
"""


def _terminate_address(mesh: E2EMesh) -> str | None:
    out = mesh.cli("get", "gtw", "tls-terminate", "-o", "yaml", check=False).stdout
    status = (yaml.safe_load(out) or {}).get("status") or {}
    ips = [a["value"] for a in status.get("addresses") or [] if a.get("value")]
    return ips[0] if ips else None


def _over_tls(ip: str, ca: TestCa, request: bytes) -> tuple[bytes, bytes]:
    """(the certificate the gateway presented as DER, everything it answered)."""
    ctx = ssl.create_default_context(cadata=ca.ca_pem)
    with (
        socket.create_connection((ip, 8443), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="shop.example.com") as tls,
    ):
        tls.sendall(request)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
        return tls.getpeercert(binary_form=True) or b"", b"".join(chunks)


def test_tls_terminate_listener_decrypts_and_forwards_plain_tcp(
    mesh: E2EMesh, tmp_path: Path
) -> None:
    """A ``TLS`` listener in ``Terminate`` mode: the gateway presents the listener's
    certificate and hands the decrypted bytes to the TLSRoute's backend, which
    speaks plain HTTP (productpage) and would not understand TLS."""
    ca = TestCa()
    leaf = ca.issue("shop.example.com", ("shop.example.com",))
    manifest = tmp_path / "terminate.yaml"
    manifest.write_text(tls_secret("terminate-cert", "default", leaf) + "\n---\n" + _TERMINATE)
    mesh.cli("apply", "-f", str(manifest))
    try:
        ip = poll(lambda: _terminate_address(mesh), "the TLS Gateway's address", deadline=60)
        request = b"GET /productpage HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"

        def answered() -> tuple[bytes, bytes] | None:
            try:
                cert, data = _over_tls(ip, ca, request)
            except OSError:
                return None
            ok = data.startswith(b"HTTP/1.1 200") and b"The Comedy of Errors" in data
            return (cert, data) if ok else None

        cert, _ = poll(answered, f"productpage over TLS at {ip}:8443", deadline=60)
        assert serial_of(cert) == leaf.serial
    finally:
        mesh.cli("delete", "-f", str(manifest))


def test_restarted_supervisor_adopts_the_deployed_gateway(mesh: E2EMesh) -> None:
    ip = _address(mesh)
    before = mesh.pod(DEPLOYED)
    supervisor = int(_state(mesh)["pid"])
    os.kill(supervisor, signal.SIGKILL)
    poll(lambda: not os.path.exists(f"/proc/{supervisor}"), "the supervisor to die")
    # The gateway's Envoy keeps serving its last configuration meanwhile.
    status, _ = http_get(f"http://{ip}:80/productpage")
    assert status == 200
    mesh.up(*MANIFESTS, profile="minimal")
    assert int(_state(mesh)["pid"]) != supervisor
    after = mesh.pod(DEPLOYED)
    # The same agent, on the same address, still registered and serving.
    assert after["sidecar_pid"] == before["sidecar_pid"] and after["ip"] == ip
    assert after["restarts"] == before["restarts"]
    assert _address(mesh) == ip
    status, body = http_get(f"http://{ip}:80/productpage")
    assert status == 200 and b"The Comedy of Errors" in body


def test_deleting_the_gateway_stops_its_agent(mesh: E2EMesh) -> None:
    ip = _address(mesh)
    pid = int(mesh.pod(DEPLOYED)["sidecar_pid"])
    netns = _state(mesh)["network"]["netns"]
    assert any(n.endswith(DEPLOYED) for n in netns), netns
    mesh.cli("delete", "gtw", GATEWAY)

    def gone() -> bool:
        state = _state(mesh)
        return (
            DEPLOYED not in state["gateways"]
            and not any(n.endswith(DEPLOYED) for n in state["network"]["netns"])
            and all(p["name"] != DEPLOYED for p in mesh.pods())
        )

    poll(gone, "the deployed gateway to be removed", deadline=30)
    assert not _running(pid), f"agent pid {pid} still runs"
    with pytest.raises(OSError):  # refused, or no route: the address is gone
        http_get(f"http://{ip}:80/productpage", timeout=2)


def test_down_after_a_crash_removes_a_deployed_gateway(mesh: E2EMesh) -> None:
    mesh.cli("apply", "-f", str(GATEWAY_API / "bookinfo-gateway.yaml"))
    ip = _address(mesh)
    poll(lambda: http_get(f"http://{ip}:80/productpage")[0] == 200, "the gateway again")
    pid = int(mesh.pod(DEPLOYED)["sidecar_pid"])
    supervisor = int(_state(mesh)["pid"])
    os.kill(supervisor, signal.SIGKILL)
    poll(lambda: not os.path.exists(f"/proc/{supervisor}"), "the supervisor to die")
    mesh.cli("down")
    assert not _running(pid), f"agent pid {pid} still runs"
    assert host_leftovers(BRIDGE) == []
