"""Istio's ``bookinfo-ingress.yaml`` (a Kubernetes Ingress), unchanged, serves
productpage through the ingress gateway of ``pilotfish up``.

One transparent mesh (root) runs Istio's unchanged ``bookinfo.yaml`` through the
shipped image map, plus the Ingress. The Ingress is converted into an Istio
Gateway and VirtualService (``translate/ingress.py``); what reaches the app is
decided by the real ingress gateway Envoy: its Exact and Prefix paths route, any
other path the app would serve gets Envoy's 404. The Ingress's status lists the
gateway's address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import E2EMesh, down_leaves_nothing, free_port, http_get, require_root

from lanes import lane_bridge
from polling import poll

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "tests" / "testdata" / "istio-samples" / "bookinfo" / "platform" / "kube"
IMAGE_MAP = ROOT / "samples" / "image-maps" / "bookinfo.yaml"


@pytest.fixture(scope="module")
def ingress_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    require_root()
    tmp = tmp_path_factory.mktemp("ingress")
    bridge = lane_bridge("pfe2i")
    mesh = E2EMesh(tmp / "state", "transparent", free_port(), free_port(), free_port(), bridge)
    mesh.extra_up_args = ("--image-map", str(IMAGE_MAP))
    try:
        mesh.up(KUBE / "bookinfo.yaml", KUBE / "bookinfo-ingress.yaml")
        yield mesh
    finally:
        down_leaves_nothing(mesh, bridge)


def test_the_ingress_serves_productpage(ingress_mesh: E2EMesh) -> None:
    mesh = ingress_mesh
    status, body = http_get(mesh.ingress + "/productpage")
    assert status == 200 and b"The Comedy of Errors" in body
    # Prefix /api/v1/products: the path itself and paths below it.
    status, body = http_get(mesh.ingress + "/api/v1/products")
    assert status == 200 and json.loads(body)[0]["title"] == "The Comedy of Errors"
    status, body = http_get(mesh.ingress + "/api/v1/products/0/reviews")
    assert status == 200 and "reviews" in json.loads(body)


def test_paths_the_ingress_does_not_list_are_refused_by_the_gateway(
    ingress_mesh: E2EMesh,
) -> None:
    mesh = ingress_mesh
    # productpage serves / and /health itself, but the Ingress routes neither:
    # the gateway answers 404 (no route) without calling the app.
    for path in ("/", "/health", "/productpage/x"):
        status, _ = http_get(mesh.ingress + path)
        assert status == 404, path
    # The app's sidecar counts the routed requests only.
    counter = "http.inbound|9080||.downstream_rq_total"

    def served() -> int:
        return mesh.envoy_stat("productpage-v1-0", counter)

    before = served()
    assert http_get(mesh.ingress + "/productpage")[0] == 200
    poll(lambda: served() == before + 1, "the routed request counted", deadline=10)
    for _ in range(3):
        assert http_get(mesh.ingress + "/health")[0] == 404
    assert served() == before + 1


def test_the_ingress_status_names_the_gateway_address(ingress_mesh: E2EMesh) -> None:
    mesh = ingress_mesh

    def status() -> dict[str, object]:
        out = mesh.cli("get", "ingress", "gateway", "-n", "default", "-o", "json").stdout
        return dict(json.loads(out).get("status") or {})

    # The status may first be published empty ({"loadBalancer": {}}), before the
    # gateway's address is known: wait for the address itself.
    want = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
    poll(lambda: status() == want, "the Ingress status to name the gateway", deadline=30)
