"""An endpoint-only change: only the changed services' load assignments are built,
and a delta stream is sent one EDS response naming only the affected clusters."""

from __future__ import annotations

from pilotfish.api.loader import load_text
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import build_snapshot
from pilotfish.xds.server.delta_stream import DeltaRequest, DeltaStreamState
from pilotfish.xds.types import (
    ADS_PUSH_ORDER,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
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
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1}
    loadBalancer: {localityLbSetting: {enabled: true}}
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1}
    loadBalancer: {localityLbSetting: {enabled: true}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-a, namespace: default}
spec: {address: 10.0.0.1, locality: r1/z1, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-b, namespace: default}
spec: {address: REVIEWS_B, locality: r1/z2, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-a, namespace: default}
spec: {address: 10.0.1.1, locality: r1/z1, labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-b, namespace: default}
spec: {address: 10.0.1.2, locality: r1/z2, labels: {app: ratings}}
"""

REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
REVIEWS_V1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
RATINGS = "outbound|9080||ratings.default.svc.cluster.local"
VIEW = ProxyView("sidecar", "default", labels=(("app", "productpage"),), locality="r1/z1")


def resources(reviews_b: str) -> tuple:  # type: ignore[type-arg]
    loaded = load_text(MESH.replace("REVIEWS_B", reviews_b), "mesh.yaml")
    assert loaded.ok, loaded.diagnostics
    return loaded.resources


def advance(gen: MeshGenerator, reviews_b: str) -> None:
    previous = gen.snapshot
    gen.set_snapshot(build_snapshot(resources(reviews_b), previous.revision + 1, previous))


def fresh(reviews_b: str) -> MeshGenerator:
    gen = MeshGenerator()
    gen.set_snapshot(build_snapshot(resources(reviews_b), 1, gen.snapshot))
    return gen


def test_only_the_changed_service_is_rebuilt_and_the_result_equals_a_fresh_build() -> None:
    gen = fresh("10.0.0.2")
    before = gen.generate(VIEW)
    count = gen.translations
    advance(gen, "10.0.0.3")
    after = gen.generate(VIEW)
    assert gen.translations == count  # listeners, routes and clusters kept
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        assert after[type_url] is before[type_url], type_url
    old, new = before[ENDPOINT_TYPE].resources, after[ENDPOINT_TYPE].resources
    # The unchanged service's (locality-aware) assignment is the very same bytes.
    assert new[RATINGS] is old[RATINGS]
    assert new[REVIEWS] != old[REVIEWS] and new[REVIEWS_V1] != old[REVIEWS_V1]
    # ...and everything equals what a generator starting from this snapshot builds.
    assert dict(new) == dict(fresh("10.0.0.3").generate(VIEW)[ENDPOINT_TYPE].resources)


def test_changes_between_two_generations_are_all_applied() -> None:
    """Two snapshots in a row before anyone asks: both changes reach the sets."""
    gen = fresh("10.0.0.2")
    gen.generate(VIEW)
    advance(gen, "10.0.0.3")
    advance(gen, "10.0.0.4")
    got = dict(gen.generate(VIEW)[ENDPOINT_TYPE].resources)
    assert got == dict(fresh("10.0.0.4").generate(VIEW)[ENDPOINT_TYPE].resources)


def test_delta_stream_gets_only_eds_for_the_affected_clusters() -> None:
    gen = fresh("10.0.0.2")
    state = DeltaStreamState(ADS_PUSH_ORDER)
    state.update(gen.generate(VIEW))
    sets = gen.generate(VIEW)
    planned = [
        *state.receive(DeltaRequest(CLUSTER_TYPE), now=0.0).responses,
        *state.receive(DeltaRequest(LISTENER_TYPE), now=0.0).responses,
        *state.receive(
            DeltaRequest(ENDPOINT_TYPE, subscribe=tuple(sets[ENDPOINT_TYPE].resources)), now=0.0
        ).responses,
        *state.receive(
            DeltaRequest(ROUTE_TYPE, subscribe=tuple(sets[ROUTE_TYPE].resources)), now=0.0
        ).responses,
    ]
    for response in planned:
        state.receive(DeltaRequest(response.type_url, response_nonce=response.nonce), now=0.0)
    advance(gen, "10.0.0.3")
    pushed = state.update(gen.generate(VIEW))
    assert [(r.type_url, r.names, r.removed) for r in pushed] == [
        (ENDPOINT_TYPE, tuple(sorted((REVIEWS, REVIEWS_V1))), ())
    ]
    # A push with nothing new plans nothing.
    assert state.update(gen.generate(VIEW)) == []


def test_every_locality_gets_the_change_whichever_is_asked_first() -> None:
    """Locality-aware assignments are kept per (namespace, locality): each key
    rebuilds the services changed since it was last built, however many
    generations ago that was."""
    z2 = ProxyView("sidecar", "default", labels=(("app", "productpage"),), locality="r1/z2")
    gen = fresh("10.0.0.2")
    gen.generate(VIEW)
    gen.generate(z2)
    advance(gen, "10.0.0.3")
    gen.generate(VIEW)  # z1 asks in this generation, z2 only in the next
    advance(gen, "10.0.0.4")
    reference = fresh("10.0.0.4")
    for view in (z2, VIEW):
        got = dict(gen.generate(view)[ENDPOINT_TYPE].resources)
        assert got == dict(reference.generate(view)[ENDPOINT_TYPE].resources), view.locality
