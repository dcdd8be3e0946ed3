"""build_snapshot's shortcut for endpoint-only changes equals the full build."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

import pilotfish.model.snapshot as snapshot_module
from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.model.snapshot import Snapshot, build_snapshot

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: grpc, port: 9090, targetPort: 7070}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: other}
spec:
  selector: {app: details}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: other}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.10}]
"""

SELECTING_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: default}
spec:
  hosts: [vms.example.internal]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
"""

APPS = ("reviews", "ratings", "details", "nobody")


def workload(name: str, namespace: str, app: str, address: str, version: str = "v1") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{address: {address}, labels: {{app: {app}, version: {version}}}, ports: {{grpc: 7171}}}}
"""


def load(text: str, filename: str) -> list[Resource]:
    loaded = load_text(text, filename)
    assert loaded.ok, loaded.diagnostics
    return list(loaded.resources)


def full_build(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Snapshot]:
    """build_snapshot without the shortcut (what it must equal)."""

    def build(resources: Sequence[Resource], revision: int, previous: Snapshot) -> Snapshot:
        with monkeypatch.context() as patch:
            patch.setattr(snapshot_module, "_endpoint_change", lambda *_: None)
            return build_snapshot(resources, revision, previous)

    return build


def count_registry_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = snapshot_module.build_registry

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot_module, "build_registry", counting)
    return calls


def assert_same(fast: Snapshot, full: Snapshot) -> None:
    assert fast.resources == full.resources
    assert fast.registry.services == full.registry.services
    assert dict(fast.registry.instances) == dict(full.registry.instances)
    assert fast.by_kind == full.by_kind
    assert fast.destination_rules == full.destination_rules
    assert fast.config_inputs == full.config_inputs
    assert fast.conversion == full.conversion
    assert fast.config_generation == full.config_generation
    assert fast.endpoint_generation == full.endpoint_generation


def test_moved_address_recomputes_only_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    services = load(SERVICES, "services.yaml")
    first = build_snapshot(
        [*services, *load(workload("r1", "default", "reviews", "10.0.0.1"), "r1.yaml")], 1
    )
    moved = load(workload("r1", "default", "reviews", "10.0.0.9"), "r1.yaml")
    full = full_build(monkeypatch)([*services, *moved], 2, first)
    builds = count_registry_builds(monkeypatch)
    fast = build_snapshot([*services, *moved], 2, first)
    assert builds == []  # the registry was updated, not rebuilt
    assert_same(fast, full)
    assert fast.config_generation == first.config_generation
    assert fast.endpoint_generation == first.endpoint_generation + 1
    (instance,) = fast.registry.instances_of("reviews.default.svc.cluster.local", 9080)
    assert instance.address == "10.0.0.9"
    grpc = fast.registry.instances_of("reviews.default.svc.cluster.local", 9090)
    assert [i.port for i in grpc] == [7171]


def test_objects_read_again_with_equal_content_keep_the_shortcut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rewritten file gives new objects for everything in it, equal but not identical."""
    text = SERVICES + "---" + workload("r1", "default", "reviews", "10.0.0.1")
    first = build_snapshot(load(text, "all.yaml"), 1)
    again = load(text.replace("10.0.0.1", "10.0.0.2"), "all.yaml")
    full = full_build(monkeypatch)(again, 2, first)
    builds = count_registry_builds(monkeypatch)
    fast = build_snapshot(again, 2, first)
    assert builds == []
    assert_same(fast, full)
    assert fast.config_generation == first.config_generation
    # The resources are the new objects, as a full build has them.
    assert all(any(r is a for a in again) for r in fast.resources)


def test_a_config_change_takes_the_full_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the endpoint shortcut; the registry is built again only when one of its
    inputs (a Service here) changed, and kept for a routing edit."""
    services = load(SERVICES, "services.yaml")
    workloads = load(workload("r1", "default", "reviews", "10.0.0.1"), "r1.yaml")
    first = build_snapshot([*services, *workloads], 1)
    edited = load(SERVICES.replace("subset: v1", "subset: v2"), "services.yaml")
    builds = count_registry_builds(monkeypatch)
    second = build_snapshot([*edited, *workloads], 2, first)
    assert builds == [] and second.registry is first.registry
    assert second.config_generation == first.config_generation + 1
    ported = load(SERVICES.replace("port: 9080}]", "port: 9081}]"), "services.yaml")
    third = build_snapshot([*ported, *workloads], 3, second)
    assert builds == [1]
    assert third.config_generation == second.config_generation + 1


def test_a_selecting_service_entry_takes_the_full_build(monkeypatch: pytest.MonkeyPatch) -> None:
    base = [*load(SERVICES, "services.yaml"), *load(SELECTING_ENTRY, "vms.yaml")]
    first = build_snapshot(
        [*base, *load(workload("r1", "default", "reviews", "10.0.0.1"), "r1.yaml")], 1
    )
    moved = load(workload("r1", "default", "reviews", "10.0.0.5"), "r1.yaml")
    builds = count_registry_builds(monkeypatch)
    second = build_snapshot([*base, *moved], 2, first)
    assert builds == [1]
    (vm,) = second.registry.instances_of("vms.example.internal", 8080)
    assert vm.address == "10.0.0.5"


def test_random_workload_changes_equal_the_full_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Moves, relabels (a workload changing service or subset), adds and removals."""
    rng = random.Random(13)
    services = load(SERVICES, "services.yaml")
    files: dict[str, list[Resource]] = {}

    def put(name: str) -> None:
        namespace = rng.choice(("default", "default", "other"))
        app, version = rng.choice(APPS), rng.choice(("v1", "v2", "v3"))
        address = f"10.{rng.randrange(4)}.0.{rng.randrange(1, 6)}"
        files[name] = load(workload(name, namespace, app, address, version), f"{name}.yaml")

    for i in range(12):
        put(f"w{i}")
    build = full_build(monkeypatch)
    fast = full = build_snapshot([*services, *(r for rs in files.values() for r in rs)], 1)
    builds = count_registry_builds(monkeypatch)
    fast_builds = 0
    for revision in range(2, 152):
        name = f"w{rng.randrange(16)}"
        if name in files and rng.random() < 0.25:
            del files[name]
        else:
            put(name)
        resources = [*services, *(r for rs in files.values() for r in rs)]
        before = len(builds)
        fast = build_snapshot(resources, revision, fast)
        fast_builds += len(builds) - before
        full = build(resources, revision, full)
        assert_same(fast, full)
    assert fast.config_generation == 0  # never a config change
    assert fast.endpoint_generation > 50
    # Workloads in "other" sit beside a ServiceEntry without a selector: still the
    # shortcut; none of these changes needed the full build.
    assert fast_builds == 0
