"""MeshGenerator: what it shares between views and what a change invalidates."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.listener.v3 import listener_pb2
from google.protobuf import any_pb2

from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import build_snapshot
from pilotfish.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ResourceSet,
)

MESH = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9081}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: default}
spec: {address: REVIEWS_ADDRESS, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    timeout: TIMEOUT
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [bookinfo.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: [bookinfo.example.com]
  gateways: [istio-system/ingress]
  http:
  - route: [{destination: {host: productpage}}]
"""

REVIEWS_VIEW = ProxyView(
    "sidecar",
    "default",
    labels=(("app", "reviews"),),
    interception="REDIRECT",
    bind_ip="0.0.0.0",
)
PRODUCTPAGE_VIEW = ProxyView(
    "sidecar",
    "default",
    labels=(("app", "productpage"),),
    interception="REDIRECT",
    bind_ip="0.0.0.0",
)
GATEWAY_VIEW = ProxyView("gateway", "istio-system", labels=(("istio", "ingressgateway"),))


def mesh(address: str = "10.0.0.1", timeout: str = "1s") -> tuple[Resource, ...]:
    text = MESH.replace("REVIEWS_ADDRESS", address).replace("TIMEOUT", timeout)
    result = load_text(text, "mesh.yaml")
    assert result.ok, result.diagnostics
    return result.resources


def generator(resources: tuple[Resource, ...]) -> MeshGenerator:
    gen = MeshGenerator()
    gen.set_snapshot(build_snapshot(resources, 1, gen.snapshot))
    return gen


def advance(gen: MeshGenerator, resources: tuple[Resource, ...]) -> None:
    snapshot = gen.snapshot
    gen.set_snapshot(build_snapshot(resources, snapshot.revision + 1, snapshot))


def parts(rs: ResourceSet) -> tuple[ResourceSet, ...]:
    """The shared sets a composed set is made of (a lone part is returned as itself)."""
    return rs.parts or (rs,)


def versions(sets: Mapping[str, ResourceSet]) -> dict[str, str]:
    return {type_url: rs.version for type_url, rs in sets.items()}


def test_sidecars_of_one_namespace_share_outbound_sets() -> None:
    gen = generator(mesh())
    reviews = gen.generate(REVIEWS_VIEW)
    before = gen.translations
    productpage = gen.generate(PRODUCTPAGE_VIEW)
    # Only the productpage proxy's inbound part was translated anew.
    assert gen.translations == before + 1
    for type_url in (LISTENER_TYPE, CLUSTER_TYPE, ROUTE_TYPE):
        outbound, inbound = parts(reviews[type_url])
        assert parts(productpage[type_url])[0] is outbound
        # ...while their inbound parts differ (the apps serve different ports).
        assert parts(productpage[type_url])[1] is not inbound
    assert "inbound|9080||" in reviews[CLUSTER_TYPE].resources
    assert "inbound|9081||" in productpage[CLUSTER_TYPE].resources
    # Inbound routes go over RDS too, so that a policy change reaches open connections.
    assert "inbound|9080||" in reviews[ROUTE_TYPE].resources
    assert "inbound|9081||" in productpage[ROUTE_TYPE].resources
    assert reviews[ENDPOINT_TYPE] is productpage[ENDPOINT_TYPE]
    assert "virtualOutbound" in reviews[LISTENER_TYPE].resources
    assert "virtualInbound" in reviews[LISTENER_TYPE].resources


def test_views_with_equal_parts_share_composed_sets() -> None:
    gen = generator(mesh())
    reviews = gen.generate(REVIEWS_VIEW)
    # Different labels (a distinct view) but the same services select it: same config.
    v2 = ProxyView(
        "sidecar",
        "default",
        labels=(("app", "reviews"), ("version", "v2")),
        interception="REDIRECT",
        bind_ip="0.0.0.0",
    )
    other = gen.generate(v2)
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        assert other[type_url] is reviews[type_url], type_url


def test_generate_twice_returns_the_same_object() -> None:
    gen = generator(mesh())
    first = gen.generate(REVIEWS_VIEW)
    count = gen.translations
    assert gen.generate(REVIEWS_VIEW) is first
    assert gen.translations == count


def test_endpoint_only_change_changes_only_eds() -> None:
    gen = generator(mesh())
    before = versions(gen.generate(REVIEWS_VIEW))
    old_endpoints = gen.generate(REVIEWS_VIEW)[ENDPOINT_TYPE]
    count = gen.translations
    advance(gen, mesh(address="10.0.0.2"))
    after = gen.generate(REVIEWS_VIEW)
    assert gen.translations == count  # nothing re-translated but endpoints
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        assert after[type_url].version == before[type_url], type_url
    assert after[ENDPOINT_TYPE].version != before[ENDPOINT_TYPE]
    assert after[ENDPOINT_TYPE].resources != old_endpoints.resources


def test_virtual_service_change_changes_rds() -> None:
    gen = generator(mesh())
    before = versions(gen.generate(REVIEWS_VIEW))
    advance(gen, mesh(timeout="5s"))
    after = versions(gen.generate(REVIEWS_VIEW))
    assert after[ROUTE_TYPE] != before[ROUTE_TYPE]
    assert after[CLUSTER_TYPE] == before[CLUSTER_TYPE]
    assert after[ENDPOINT_TYPE] == before[ENDPOINT_TYPE]


def test_unchanged_snapshot_keeps_every_version() -> None:
    gen = generator(mesh())
    before = versions(gen.generate(REVIEWS_VIEW))
    advance(gen, mesh())
    assert versions(gen.generate(REVIEWS_VIEW)) == before


def test_gateway_gets_gateway_listeners_and_outbound_clusters() -> None:
    gen = generator(mesh())
    gateway = gen.generate(GATEWAY_VIEW)
    sidecar = gen.generate(REVIEWS_VIEW)
    listeners = set(gateway[LISTENER_TYPE].resources)
    assert listeners == {"0.0.0.0_8080"}
    assert set(gateway[ROUTE_TYPE].resources) == {"http.8080"}
    clusters = set(gateway[CLUSTER_TYPE].resources)
    assert {
        "outbound|9080||reviews.default.svc.cluster.local",
        "outbound|9081||productpage.default.svc.cluster.local",
        "PassthroughCluster",
        "BlackHoleCluster",
    } <= clusters
    assert not any(name.startswith("inbound|") for name in clusters)
    assert gateway[ENDPOINT_TYPE] is sidecar[ENDPOINT_TYPE]

    packed = any_pb2.Any.FromString(gateway[LISTENER_TYPE].resources["0.0.0.0_8080"])
    listener = listener_pb2.Listener()
    assert packed.Unpack(listener)
    assert listener.address.socket_address.port_value == 8080
    assert listener.address.socket_address.address == GATEWAY_VIEW.bind_ip
