"""Kubernetes list and watch responses folded into resources (store/kubernetes_source.py).

The responses are hand-recorded shapes of the API server's (tests/testdata/kubernetes-api).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.api.resource import ResourceKey
from pilotfish.store.kubernetes_source import (
    KubernetesSource,
    api_path,
    list_params,
    watch_params,
)
from pilotfish.store.memory import MemoryStore

DATA = Path(__file__).parents[2] / "testdata" / "kubernetes-api"
VS = "VirtualService"


def recorded(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def watch_events(name: str) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def key(name: str, kind: str = VS, namespace: str = "bookinfo") -> ResourceKey:
    return ResourceKey(kind, namespace, name)


def subset_of(source: KubernetesSource, name: str) -> str | None:
    res = source.get(key(name))
    assert res is not None
    spec = res.spec
    assert isinstance(spec, VirtualServiceSpec)
    destination = spec.http[0].route[0].destination
    return destination.subset


@pytest.fixture
def listed() -> tuple[KubernetesSource, MemoryStore]:
    store = MemoryStore()
    source = KubernetesSource([VS], store)
    source.fold_list(VS, [recorded("virtualservices-list.json")])
    return source, store


def test_api_paths_follow_the_group_version_and_scope() -> None:
    assert api_path("VirtualService") == "/apis/networking.istio.io/v1/virtualservices"
    assert api_path("Service", "shop") == "/api/v1/namespaces/shop/services"
    assert api_path("Pod", "shop", "web-0") == "/api/v1/namespaces/shop/pods/web-0"
    assert api_path("EndpointSlice") == "/apis/discovery.k8s.io/v1/endpointslices"
    assert api_path("KubernetesGateway", "infra") == (
        "/apis/gateway.networking.k8s.io/v1/namespaces/infra/gateways"
    )
    assert api_path("AuthorizationPolicy") == "/apis/security.istio.io/v1/authorizationpolicies"
    # Cluster-scoped kinds have no namespace segment, whatever the caller passes.
    assert api_path("Namespace", "shop", "shop") == "/api/v1/namespaces/shop"
    assert api_path("GatewayClass", "x") == "/apis/gateway.networking.k8s.io/v1/gatewayclasses"
    with pytest.raises(KeyError):
        api_path("CronJob")


def test_request_queries_resume_from_the_position_and_ask_for_bookmarks() -> None:
    assert list_params() == {"limit": "500"}
    assert list_params("abc")["continue"] == "abc"
    assert watch_params("81234") == {
        "watch": "true",
        "resourceVersion": "81234",
        "allowWatchBookmarks": "true",
    }


def test_unknown_kind_is_refused_up_front() -> None:
    with pytest.raises(KeyError):
        KubernetesSource(["CronJob"])


def test_list_loads_typed_resources_and_records_the_resource_version(
    listed: tuple[KubernetesSource, MemoryStore],
) -> None:
    source, store = listed
    assert source.resource_version(VS) == "81234"
    assert [r.name for r in source.objects()] == ["ratings", "reviews"]
    assert subset_of(source, "reviews") == "v1"
    assert source.diagnostics() == []
    # The sink (a plain store) holds the same objects, written as one change.
    assert [r.key for r in store.list()] == [key("ratings"), key("reviews")]
    assert store.revision == 1
    reviews = source.get(key("reviews"))
    assert reviews is not None and reviews.source is not None
    assert reviews.source.file == (
        "kubernetes:/apis/networking.istio.io/v1/namespaces/bookinfo/virtualservices/reviews"
    )


def test_built_in_list_items_take_apiversion_and_kind_from_the_list() -> None:
    page = recorded("services-list.json")
    assert all("kind" not in item for item in page["items"])  # as the server sends them
    source = KubernetesSource(["Service", "Namespace"])
    change = source.fold_list("Service", [page])
    assert sorted(r.name for r in change.applied) == ["ratings", "reviews"]
    assert all(r.api_version == "v1" and r.kind == "Service" for r in change.applied)
    source.fold_list("Namespace", [recorded("namespaces-list.json")])
    (namespace,) = [r for r in source.objects() if r.kind == "Namespace"]
    assert namespace.metadata.labels["istio-injection"] == "enabled"
    assert source.diagnostics() == []


def test_pages_of_one_list_are_one_snapshot_at_the_first_pages_version() -> None:
    source = KubernetesSource(["DestinationRule"])
    pages = [
        recorded("destinationrules-list-page1.json"),
        recorded("destinationrules-list-page2.json"),
    ]
    assert pages[0]["metadata"]["continue"]
    change = source.fold_list("DestinationRule", pages)
    assert sorted(r.name for r in change.applied) == ["ratings", "reviews"]
    assert source.resource_version("DestinationRule") == "81240"
    with pytest.raises(ValueError):
        source.fold_list("DestinationRule", [])


def test_watch_events_apply_in_order(listed: tuple[KubernetesSource, MemoryStore]) -> None:
    source, store = listed
    added, modified, bookmark, deleted = watch_events("virtualservices-watch.jsonl")

    change = source.fold_event(VS, added)
    assert [r.name for r in change.applied] == ["details"]
    assert source.resource_version(VS) == "81300"

    source.fold_event(VS, modified)
    assert subset_of(source, "reviews") == "v2"
    assert source.resource_version(VS) == "81301"

    change = source.fold_event(VS, bookmark)
    assert change.applied == () and change.removed == ()
    assert source.resource_version(VS) == "81450"  # a bookmark only moves the position
    assert len(source.objects()) == 3

    change = source.fold_event(VS, deleted)
    assert change.removed == (key("ratings"),)
    assert source.get(key("ratings")) is None
    assert source.resource_version(VS) == "81460"
    assert [r.name for r in store.list()] == ["details", "reviews"]
    assert store.revision == 4  # list, added, modified, deleted: the bookmark wrote nothing


def test_invalid_object_is_reported_with_its_field_and_the_last_good_keeps_serving(
    listed: tuple[KubernetesSource, MemoryStore],
) -> None:
    source, store = listed
    revision = store.revision
    change = source.fold_event(VS, recorded("virtualservice-invalid-event.json"))
    assert change.applied == ()
    assert subset_of(source, "reviews") == "v1"  # not v3: the bad version never applied
    assert store.revision == revision
    (problem,) = source.diagnostics()
    assert problem.is_error
    assert problem.field == "spec.http[0].route[0].weight"
    assert (problem.kind, problem.namespace, problem.name) == (VS, "bookinfo", "reviews")
    assert problem.source is not None and problem.source.file.endswith("/virtualservices/reviews")
    assert source.resource_version(VS) == "81500"  # the event was seen all the same

    # A good version clears the problem; deleting the object removes problem and object.
    _, modified, _, _ = watch_events("virtualservices-watch.jsonl")
    source.fold_event(VS, modified)
    assert source.diagnostics() == []
    source.fold_event(VS, recorded("virtualservice-invalid-event.json"))
    deleted = {"type": "DELETED", "object": recorded("virtualservice-invalid-event.json")["object"]}
    change = source.fold_event(VS, deleted)
    assert change.removed == (key("reviews"),)
    assert source.diagnostics() == [] and source.get(key("reviews")) is None


def test_an_object_invalid_from_the_start_contributes_nothing() -> None:
    store = MemoryStore()
    source = KubernetesSource([VS], store)
    page = recorded("virtualservices-list.json")
    page["items"][0]["spec"]["hosts"] = "reviews"  # a string where a list belongs
    change = source.fold_list(VS, [page])
    assert [r.name for r in change.applied] == ["ratings"]
    assert [d.field for d in source.diagnostics()] == ["spec.hosts"]
    # Deleting it tells the sink nothing it did not have.
    change = source.fold_event(VS, {"type": "DELETED", "object": page["items"][0]})
    assert change.removed == () and source.diagnostics() == []
    assert [r.name for r in store.list()] == ["ratings"]


def test_gone_asks_for_a_relist_and_the_relist_removes_what_vanished(
    listed: tuple[KubernetesSource, MemoryStore],
) -> None:
    source, store = listed
    source.fold_event(VS, watch_events("virtualservices-watch.jsonl")[0])  # details added
    change = source.fold_event(VS, recorded("watch-error-410.json"))
    assert change.relist
    assert "too old resource version" in change.problem
    assert source.resource_version(VS) == ""  # no position left to resume from
    assert len(source.objects()) == 3  # the last configuration keeps serving meanwhile

    # The relist no longer has details (deleted while the events were lost).
    page = recorded("virtualservices-list.json")
    page["metadata"]["resourceVersion"] = "82000"
    change = source.fold_list(VS, [page])
    assert change.removed == (key("details"),)
    assert [r.name for r in store.list()] == ["ratings", "reviews"]
    assert source.resource_version(VS) == "82000"


def test_other_errors_are_reported_and_keep_the_position(
    listed: tuple[KubernetesSource, MemoryStore],
) -> None:
    source, _ = listed
    change = source.fold_event(VS, recorded("watch-error-500.json"))
    assert not change.relist
    assert "500" in change.problem and "timed out" in change.problem
    assert source.resource_version(VS) == "81234"
    assert source.fold_event(VS, {"type": "ADDED"}).problem
    assert (
        "unknown event type"
        in source.fold_event(VS, {"type": "SYNC", "object": {"metadata": {}}}).problem
    )


def test_an_object_of_another_kind_on_a_watch_is_refused(
    listed: tuple[KubernetesSource, MemoryStore],
) -> None:
    source, _ = listed
    dr = recorded("destinationrules-list-page1.json")["items"][0]
    change = source.fold_event(VS, {"type": "ADDED", "object": dr})
    assert change.applied == ()
    assert any("sent a DestinationRule" in d.message for d in source.diagnostics())
