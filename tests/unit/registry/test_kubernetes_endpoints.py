"""Service endpoints from recorded EndpointSlices and Pods (registry/kubernetes_endpoints.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.registry.build import build_registry
from pilotfish.registry.kubernetes_endpoints import (
    SliceEndpoint,
    pod_workload_entry,
    sent_instances,
    slice_endpoints,
)
from pilotfish.registry.model import WORKLOAD_NAME_ANNOTATION, MeshService
from pilotfish.store.kubernetes_source import KubernetesSource

DATA = Path(__file__).parents[2] / "testdata" / "kubernetes-api"
REVIEWS = "reviews.bookinfo.svc.cluster.local"
RATINGS = "ratings.bookinfo.svc.cluster.local"


def recorded(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cluster() -> dict[str, list[Resource]]:
    """The recorded lists, loaded as a Kubernetes source would load them."""
    files = {
        "Service": "services-list.json",
        "EndpointSlice": "endpointslices-list.json",
        "Pod": "pods-list.json",
    }
    source = KubernetesSource(files)
    for kind, name in files.items():
        source.fold_list(kind, [recorded(name)])
    assert source.diagnostics() == []
    return {kind: [r for r in source.objects() if r.kind == kind] for kind in files}


def service(cluster: dict[str, list[Resource]], name: str) -> tuple[Resource, MeshService]:
    (res,) = [r for r in cluster["Service"] if r.name == name]
    svc = build_registry([res]).service(f"{name}.bookinfo.svc.cluster.local")
    assert svc is not None
    return res, svc


def endpoints(cluster: dict[str, list[Resource]], name: str) -> dict[str, SliceEndpoint]:
    res, svc = service(cluster, name)
    found = slice_endpoints(res, svc, cluster["EndpointSlice"], cluster["Pod"])
    return {e.instance.address: e for e in found}


def test_conditions_give_istios_health(cluster: dict[str, list[Resource]]) -> None:
    found = endpoints(cluster, "reviews")
    assert {address: e.health for address, e in found.items()} == {
        "10.244.1.12": "HEALTHY",  # ready (listed twice; the better status wins)
        "10.244.2.31": "HEALTHY",
        "10.244.2.40": "UNHEALTHY",  # not ready yet
        # Terminating and still serving, on a Service with persistent sessions.
        "10.244.1.19": "DRAINING",
        "10.244.1.23": "UNHEALTHY",  # terminating, no longer serving
    }
    sent = sorted(i.address for i in sent_instances(found.values()))
    assert sent == ["10.244.1.12", "10.244.1.19", "10.244.2.31"]


def test_terminating_endpoints_are_dropped_without_persistent_sessions(
    cluster: dict[str, list[Resource]],
) -> None:
    found = endpoints(cluster, "ratings")
    assert found["10.244.1.21"].health == "UNHEALTHY"  # serving, terminating, no label
    assert [i.address for i in sent_instances(found.values())] == ["10.244.2.7"]


def test_instances_take_the_pods_labels_account_and_workload(
    cluster: dict[str, list[Resource]],
) -> None:
    found = endpoints(cluster, "reviews")
    v2 = found["10.244.2.31"].instance
    assert (v2.hostname, v2.service_port, v2.port) == (REVIEWS, 9080, 9080)
    labels = dict(v2.labels)
    assert labels["app"] == "reviews" and labels["version"] == "v2"
    assert v2.service_account == "bookinfo-reviews"
    assert v2.workload == "reviews-v2"  # the Deployment: the ReplicaSet less its hash
    assert v2.namespace == "bookinfo"
    assert v2.locality == "europe-west1/europe-west1-b"  # from the istio-locality label
    ratings = endpoints(cluster, "ratings")["10.244.2.7"].instance
    assert ratings.service_account == "default"  # no serviceAccountName: Kubernetes' default


def test_an_endpoint_whose_pod_is_not_seen_yet_has_no_pod_facts(
    cluster: dict[str, list[Resource]],
) -> None:
    res, svc = service(cluster, "reviews")
    found = slice_endpoints(res, svc, cluster["EndpointSlice"], [])
    v1 = next(e.instance for e in found if e.instance.address == "10.244.1.12")
    assert v1.labels == () and v1.service_account == "" and v1.workload == ""


def test_a_pod_is_found_by_ip_when_the_slice_has_no_target_ref(
    cluster: dict[str, list[Resource]],
) -> None:
    res, svc = service(cluster, "ratings")
    raw = recorded("endpointslices-list.json")
    ratings_slice = raw["items"][2]
    for endpoint in ratings_slice["endpoints"]:
        del endpoint["targetRef"]
    source = KubernetesSource(["EndpointSlice"])
    source.fold_list("EndpointSlice", [{**raw, "items": [ratings_slice]}])
    found = slice_endpoints(res, svc, source.objects(), cluster["Pod"])
    by_ip = {e.instance.address: e.instance for e in found}
    assert dict(by_ip["10.244.2.7"].labels)["app"] == "ratings"


def test_slices_of_other_services_and_ports_are_ignored(
    cluster: dict[str, list[Resource]],
) -> None:
    found = endpoints(cluster, "ratings")
    assert set(found) == {"10.244.2.7", "10.244.1.21"}  # none of reviews' addresses
    res, svc = service(cluster, "ratings")
    renamed = recorded("endpointslices-list.json")
    renamed["items"][2]["ports"][0]["name"] = "grpc"  # a port the Service does not have
    source = KubernetesSource(["EndpointSlice"])
    source.fold_list("EndpointSlice", [renamed])
    assert slice_endpoints(res, svc, source.objects(), cluster["Pod"]) == []


def test_running_pods_become_the_workload_entries_the_registry_selects(
    cluster: dict[str, list[Resource]],
) -> None:
    entries = {p.name: pod_workload_entry(p) for p in cluster["Pod"]}
    assert entries["ratings-v1-b6994bb9-pending"] is None  # no IP yet
    assert entries["ratings-v1-b6994bb9-done"] is None  # finished
    assert entries["reviews-v1-5c9d8b7f4d-h9j3r"] is None  # being deleted
    entry = entries["reviews-v1-5c9d8b7f4d-x7k2p"]
    assert entry is not None and entry.kind == "WorkloadEntry"
    spec = entry.spec
    assert isinstance(spec, WorkloadEntrySpec)
    assert spec.address == "10.244.1.12"
    assert spec.ports == {"http": 9080, "http-envoy-prom": 15090}
    assert spec.service_account == "bookinfo-reviews"
    assert entry.metadata.annotations[WORKLOAD_NAME_ANNOTATION] == "reviews-v1"

    # The selector path of registry.build sees them as it sees the runtime's pods.
    workloads = [e for e in entries.values() if e is not None]
    registry = build_registry([*cluster["Service"], *workloads])
    addresses = sorted(i.address for i in registry.instances_of(RATINGS, 9080))
    assert addresses == ["10.244.2.7"]
    reviews = registry.instances_of(REVIEWS, 9080)
    assert {i.workload for i in reviews} == {"reviews-v1", "reviews-v2", "reviews-v3"}


def test_host_network_pods_are_no_workload_entries(cluster: dict[str, list[Resource]]) -> None:
    raw = recorded("pods-list.json")
    raw["items"][0]["spec"]["hostNetwork"] = True
    source = KubernetesSource(["Pod"])
    source.fold_list("Pod", [raw])
    pod = next(p for p in source.objects() if p.name == "reviews-v1-5c9d8b7f4d-x7k2p")
    assert pod_workload_entry(pod) is None
    with pytest.raises(TypeError):
        pod_workload_entry(cluster["Service"][0])


def test_only_terminating_endpoints_drain(cluster: dict[str, list[Resource]]) -> None:
    res, svc = service(cluster, "reviews")
    raw = recorded("endpointslices-list.json")
    draining = raw["items"][0]["endpoints"][3]
    assert draining["addresses"] == ["10.244.1.19"]
    draining["conditions"]["terminating"] = False  # not ready but serving: still no drain
    source = KubernetesSource(["EndpointSlice"])
    source.fold_list("EndpointSlice", [raw])
    found = slice_endpoints(res, svc, source.objects(), cluster["Pod"])
    health = {e.instance.address: e.health for e in found}
    assert health["10.244.1.19"] == "UNHEALTHY"
