"""Istio's own bookinfo.yaml, unchanged, runs on ``pilotfish up --image-map``.

The Deployments name Istio's container images; the shipped image map runs the
Python Bookinfo in their place. Explicit mode: no root needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import E2EMesh, down_leaves_nothing, free_port, http_get

from lanes import lane_bridge, lane_cidr
from polling import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
ISTIO = ROOT / "tests" / "testdata" / "istio-samples" / "bookinfo"
IMAGE_MAP = ROOT / "samples" / "image-maps" / "bookinfo.yaml"


@pytest.fixture(scope="module")
def istio_bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    tmp = tmp_path_factory.mktemp("istio-bookinfo")
    bridge = lane_bridge("pfe2k")
    mesh = E2EMesh(
        tmp / "state",
        "explicit",
        free_port(),
        free_port(),
        free_port(),
        bridge,
        explicit_cidr=lane_cidr("127.81.0.0/24"),
    )
    mesh.extra_up_args = ("--image-map", str(IMAGE_MAP))
    try:
        mesh.up(
            ISTIO / "platform" / "kube" / "bookinfo.yaml",
            ISTIO / "networking" / "bookinfo-gateway.yaml",
        )
        yield mesh
    finally:
        down_leaves_nothing(mesh, bridge)


def test_istio_manifest_runs_the_python_bookinfo(istio_bookinfo: E2EMesh) -> None:
    mesh = istio_bookinfo
    names = sorted(p["name"] for p in mesh.pods() if p["name"] != "istio-ingressgateway")
    assert names == [
        "details-v1-0",
        "productpage-v1-0",
        "ratings-v1-0",
        "reviews-v1-0",
        "reviews-v2-0",
        "reviews-v3-0",
    ]
    status, body = http_get(mesh.ingress + "/productpage")
    assert status == 200 and b"The Comedy of Errors" in body
    # No routing given: Istio's default balancer (least request) over the three versions.
    poll(lambda: set(mesh.versions(30)) == {"v1", "v2", "v3"}, "all three versions", deadline=30)
