"""Explicit mode (no root needed): apps reach services through their sidecar's HTTP proxy."""

from __future__ import annotations

import json

import pytest
from e2ekit import NETWORKING, E2EMesh, http_get

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_explicit_mode_routes_the_same(explicit_mesh: E2EMesh) -> None:
    mesh = explicit_mesh
    pods = {p["name"]: p for p in mesh.pods()}
    assert pods["reviews-v1-0"]["ip"].startswith("127.79.0.")
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
