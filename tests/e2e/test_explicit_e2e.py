"""Explicit mode (no root needed): apps reach services through their sidecar's HTTP proxy."""

from __future__ import annotations

import ipaddress
import json

import pytest
from e2ekit import NETWORKING, E2EMesh, http_get, poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_explicit_mode_routes_the_same(explicit_mesh: E2EMesh) -> None:
    mesh = explicit_mesh
    pods = {p["name"]: p for p in mesh.pods()}
    ip = ipaddress.ip_address(pods["reviews-v1-0"]["ip"])
    assert ip in ipaddress.ip_network(mesh.explicit_cidr)
    mesh.cli(
        "apply",
        "-f",
        str(NETWORKING / "destination-rule-all.yaml"),
        "-f",
        str(NETWORKING / "virtual-service-reviews-test-v2.yaml"),
    )
    mesh.converge({"v2"}, headers={"end-user": "jason"})
    assert mesh.versions(30, headers={"end-user": "jason"}) == {"v2": 30}
    mesh.converge({"v1"})
    assert mesh.versions(30) == {"v1": 30}
    status, body = http_get(mesh.ingress + "/productpage")
    assert status == 200 and b"The Comedy of Errors" in body
    out = json.loads(mesh.cli("get", "virtualservice", "reviews", "-o", "json").stdout)
    assert out["spec"]["http"][0]["match"][0]["headers"]["end-user"]["exact"] == "jason"


def test_explicit_pods_serve_istio_metrics_on_their_own_address(explicit_mesh: E2EMesh) -> None:
    mesh = explicit_mesh
    ip = next(p["ip"] for p in mesh.pods() if p["name"] == "productpage-v1-0")
    status, _ = http_get(mesh.ingress + "/productpage")
    assert status == 200

    def counted(port: int) -> bool:
        status, body = http_get(f"http://{ip}:{port}/stats/prometheus")
        text = body.decode("utf-8", "replace")
        return status == 200 and any(
            line.startswith("istio_requests_total{") and 'reporter="destination"' in line
            for line in text.splitlines()
        )

    # The proxy's own endpoint, and the agent's merged one (Prometheus' target).
    poll(lambda: counted(15090), f"productpage's metrics on {ip}:15090", deadline=30)
    assert counted(15020)
