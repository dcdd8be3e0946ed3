"""A routing edit (objects keep their keys, no registry input changed): the snapshot
keeps the previous order and registry, and equals a build from scratch."""

from __future__ import annotations

from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.model.snapshot import Snapshot, build_snapshot

MESH = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: PORT}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-a, namespace: default}
spec: {address: 10.0.0.1, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}], timeout: TIMEOUT}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: another, namespace: default}
spec:
  hosts: [another.example.com]
  http: [{route: [{destination: {host: reviews}}]}]
"""


def objects(port: int = 9080, timeout: str = "1s") -> tuple[Resource, ...]:
    loaded = load_text(MESH.replace("PORT", str(port)).replace("TIMEOUT", timeout), "m.yaml")
    assert loaded.ok, loaded.diagnostics
    return loaded.resources


def edited(previous: Snapshot, new: tuple[Resource, ...], kind: str) -> tuple[Resource, ...]:
    """``previous``'s objects with those of ``kind`` taken from ``new``."""
    fresh = {r.key: r for r in new if r.kind == kind}
    return tuple(fresh.get(r.key, r) for r in previous.resources)


def assert_same_build(got: Snapshot, resources: tuple[Resource, ...]) -> None:
    want = build_snapshot(resources, got.revision)
    assert got.resources == want.resources
    assert got.registry == want.registry
    assert got.by_kind == want.by_kind


def test_a_virtual_service_edit_keeps_the_order_and_the_registry() -> None:
    first = build_snapshot(objects(), 1)
    resources = edited(first, objects(timeout="2s"), "VirtualService")
    second = build_snapshot(tuple(reversed(resources)), 2, first)
    assert second.config_generation == first.config_generation + 1
    assert second.registry is first.registry
    assert [r.key for r in second.resources] == [r.key for r in first.resources]
    assert_same_build(second, resources)


def test_a_service_edit_builds_the_registry_again() -> None:
    first = build_snapshot(objects(), 1)
    resources = edited(first, objects(port=9081), "Service")
    second = build_snapshot(resources, 2, first)
    assert second.registry is not first.registry
    (svc,) = second.registry.services.values()
    assert [p.port for p in svc.ports] == [9081]
    assert_same_build(second, resources)


def test_an_added_object_is_sorted_in() -> None:
    first = build_snapshot(objects()[:2], 1)
    second = build_snapshot(objects(), 2, first)
    assert [r.key for r in second.resources] == sorted(r.key for r in objects())
    assert second.registry is first.registry  # only VirtualServices were added
    assert_same_build(second, objects())
