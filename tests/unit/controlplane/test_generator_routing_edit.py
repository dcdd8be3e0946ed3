"""A routing edit (VirtualService, DestinationRule) keeps every sidecar's local part;
anything its inbound side reads, and gateways, are translated again. Either way the
result equals what a generator starting from the new snapshot builds."""

from __future__ import annotations

from pilotfish.api.loader import load_text
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import build_snapshot
from pilotfish.xds.types import ADS_PUSH_ORDER, CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE

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
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  gateways: [mesh, ingress]
  http:
  - route:
    - {destination: {host: ratings, subset: v1}, weight: WEIGHT}
    - {destination: {host: ratings, subset: v2}, weight: REST}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-a, namespace: default}
spec: {address: 10.0.0.1, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-a, namespace: default}
spec: {address: 10.0.1.1, labels: {app: ratings, version: v1}}
"""

POLICY = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
"""

REVIEWS = ProxyView("sidecar", "default", labels=(("app", "reviews"),), app_ports=((9080, 9080),))
GATEWAY = ProxyView("gateway", "default", labels=(("istio", "ingressgateway"),))


def resources(weight: int, extra: str = "") -> tuple:  # type: ignore[type-arg]
    loaded = load_text(
        MESH.replace("REST", str(100 - weight)).replace("WEIGHT", str(weight)) + extra,
        "mesh.yaml",
    )
    assert loaded.ok, loaded.diagnostics
    return loaded.resources


def fresh(weight: int, extra: str = "") -> MeshGenerator:
    gen = MeshGenerator()
    gen.set_snapshot(build_snapshot(resources(weight, extra), 1, gen.snapshot))
    return gen


def advance(gen: MeshGenerator, weight: int, extra: str = "") -> None:
    previous = gen.snapshot
    gen.set_snapshot(build_snapshot(resources(weight, extra), previous.revision + 1, previous))


def assert_fresh(gen: MeshGenerator, view: ProxyView, weight: int, extra: str = "") -> None:
    got, want = gen.generate(view), fresh(weight, extra).generate(view)
    for type_url in ADS_PUSH_ORDER:
        assert dict(got[type_url].resources) == dict(want[type_url].resources), type_url


def test_a_virtual_service_edit_reuses_the_sidecar_inbound_part() -> None:
    gen = fresh(90)
    before = gen.generate(REVIEWS)
    assert "127.0.0.1_9080" in before[LISTENER_TYPE].resources
    advance(gen, 50)
    count = gen.translations
    after = gen.generate(REVIEWS)
    # Only the shared outbound part is translated again: clusters read no VirtualService.
    assert gen.translations == count + 1
    assert gen.local_parts_kept == 1
    inbound = after[LISTENER_TYPE].resources["127.0.0.1_9080"]
    assert inbound is before[LISTENER_TYPE].resources["127.0.0.1_9080"]
    assert after[ROUTE_TYPE].resources["http_proxy"] != before[ROUTE_TYPE].resources["http_proxy"]
    assert_fresh(gen, REVIEWS, 50)


def test_a_destination_rule_edit_reuses_it_too() -> None:
    gen = fresh(90)
    gen.generate(REVIEWS)
    previous = gen.snapshot
    edited = tuple(r for r in resources(90) if r.kind != "DestinationRule")
    gen.set_snapshot(build_snapshot(edited, previous.revision + 1, previous))
    count = gen.translations
    gen.generate(REVIEWS)
    assert gen.translations == count + 2  # outbound and clusters (subsets are gone)
    assert gen.local_parts_kept == 1


def test_a_policy_edit_translates_the_inbound_part_again() -> None:
    gen = fresh(90)
    before = gen.generate(REVIEWS)
    advance(gen, 90, POLICY)
    count = gen.translations
    after = gen.generate(REVIEWS)
    assert gen.translations == count + 3 and gen.local_parts_kept == 0
    assert after[ROUTE_TYPE].version != before[ROUTE_TYPE].version  # the deny route policy
    assert_fresh(gen, REVIEWS, 90, POLICY)


def test_a_gateway_routes_the_edit_so_its_part_is_translated_again() -> None:
    gen = fresh(90)
    before = gen.generate(GATEWAY)
    gen.generate(REVIEWS)
    advance(gen, 50)
    count = gen.translations
    after = gen.generate(GATEWAY)
    assert gen.translations == count + 1  # its listeners and routes; clusters kept
    assert after[ROUTE_TYPE].version != before[ROUTE_TYPE].version
    assert_fresh(gen, GATEWAY, 50)
    assert after[CLUSTER_TYPE].resources.keys() == before[CLUSTER_TYPE].resources.keys()
