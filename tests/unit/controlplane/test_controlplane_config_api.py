"""The configuration REST API against a real control plane on loopback, port 0."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from pilotfish.api.loader import load_text
from pilotfish.api.resource import ResourceKey
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store import CompositeStore, FileStore, MemoryStore
from polling import apoll

DEADLINE = 10.0
VS_URL = "/apis/networking.istio.io/v1/namespaces/default/virtualservices"
SVC_URL = "/api/v1/namespaces/default/services"

VS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {
        "hosts": ["reviews"],
        "http": [{"route": [{"destination": {"host": "reviews"}}]}],
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]},
}

# Three independent mistakes: every one must be reported.
BROKEN_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        hots: reviews
    retries:
      attempts: many
"""


@dataclass
class Api:
    cp: ControlPlane
    session: aiohttp.ClientSession
    base: str
    config_dir: Path

    async def call(
        self, method: str, path: str, body: Any = None, *, text: str | None = None, **kw: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        data = text.encode() if text is not None else None
        headers = {"Authorization": f"Bearer {self.cp.api_token.reveal()}", **kw.pop("headers", {})}
        async with self.session.request(
            method,
            self.base + path,
            json=body if text is None else None,
            data=data,
            headers=headers,
            **kw,
        ) as resp:
            return resp.status, await resp.json(content_type=None), resp


async def _start(tmp_path: Path, **settings: Any) -> tuple[ControlPlane, Path]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    cp = ControlPlane(
        ControlPlaneSettings(
            config_paths=(str(config_dir),),
            xds_port=0,
            http_port=0,
            poll_interval=0.02,
            quiet_period=0.01,
            max_delay=0.05,
            **settings,
        )
    )
    await cp.start()
    return cp, config_dir


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    cp, config_dir = await _start(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(cp, session, f"http://127.0.0.1:{cp.http_port}", config_dir)
    finally:
        await cp.close()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it is true, failing after DEADLINE seconds."""
    await apoll(check, "the condition", DEADLINE, interval=0.02, ignore=())


# -- writes --------------------------------------------------------------------


async def test_put_creates_then_replaces_then_is_unchanged(api: Api) -> None:
    status, body, resp = await api.call("PUT", f"{VS_URL}/reviews", VS)
    assert status == 201
    assert resp.headers["X-Pilotfish-Change"] == "created"
    assert body["spec"] == VS["spec"]
    assert body["metadata"]["resourceVersion"] == str(api.cp.store.revision)
    assert body["metadata"]["generation"] == 1
    assert (api.config_dir / "default" / "virtualservice-reviews.yaml").is_file()

    changed = copy.deepcopy(VS)
    changed["spec"]["http"][0]["timeout"] = "5s"
    status, body, resp = await api.call("PUT", f"{VS_URL}/reviews", changed)
    assert (status, resp.headers["X-Pilotfish-Change"]) == (200, "configured")
    assert body["metadata"]["generation"] == 2  # the server's count of spec changes
    revision = api.cp.store.revision
    assert body["metadata"]["resourceVersion"] == str(revision)

    # Sending back what the server answered (with its resourceVersion) changes nothing.
    status, again, resp = await api.call("PUT", f"{VS_URL}/reviews", body)
    assert (status, resp.headers["X-Pilotfish-Change"]) == (200, "unchanged")
    assert api.cp.store.revision == revision
    assert again["metadata"]["resourceVersion"] == str(revision)
    assert again["metadata"]["generation"] == 2

    # A label is not a spec change, and a writer's own generation is not the server's.
    relabelled = copy.deepcopy(changed)
    relabelled["metadata"].update(labels={"team": "books"}, generation=7)
    status, body, resp = await api.call("PUT", f"{VS_URL}/reviews", relabelled)
    assert (status, resp.headers["X-Pilotfish-Change"]) == (200, "configured")
    assert body["metadata"]["generation"] == 2


async def test_get_returns_the_object_as_written(api: Api) -> None:
    doc = copy.deepcopy(VS)
    doc["metadata"]["labels"] = {"team": "books"}
    await api.call("PUT", f"{VS_URL}/reviews", doc)
    status, body, _ = await api.call("GET", f"{VS_URL}/reviews")
    assert status == 200
    # Nothing added (no file path, no line numbers, no defaults) but the status the
    # control plane computes: here the analyzers' finding that the host is unknown.
    served = dict(body)
    computed = served.pop("status")
    # ... and the server's generation.
    assert served == {**doc, "metadata": {**doc["metadata"], "generation": 1}}
    assert [m["type"] for m in computed["validationMessages"]] == [
        {"code": "IST0101", "name": "ReferencedResourceNotFound"}
    ]


async def test_yaml_body_and_namespace_from_the_url(api: Api) -> None:
    text = yaml.safe_dump({**VS, "metadata": {"name": "reviews"}})
    url = "/apis/networking.istio.io/v1beta1/namespaces/books/virtualservices/reviews"
    status, body, _ = await api.call(
        "PUT", url, text=text.replace("networking.istio.io/v1", "networking.istio.io/v1beta1")
    )
    assert status == 201, body
    assert body["metadata"]["namespace"] == "books"
    assert api.cp.store.get(ResourceKey("VirtualService", "books", "reviews")) is not None


async def test_invalid_body_lists_every_error_like_the_file_loader(api: Api) -> None:
    status, body, _ = await api.call("PUT", f"{VS_URL}/reviews", text=BROKEN_VS)
    assert status == 400
    expected = [d.to_json() for d in load_text(BROKEN_VS, "<request>").diagnostics]
    assert len([d for d in expected if d["severity"] == "error"]) >= 3
    assert body["errors"] == [d for d in expected if d["severity"] == "error"]
    assert {e["field"] for e in body["errors"]} == {
        "spec.http[0].route[0].destination.hots",  # unknown field
        "spec.http[0].route[0].destination.host",  # required field missing
        "spec.http[0].retries.attempts",  # not an integer
    }
    assert all(e["file"] == "<request>" and e["line"] > 0 for e in body["errors"])
    assert api.cp.store.get(ResourceKey("VirtualService", "default", "reviews")) is None


async def test_body_must_agree_with_the_url(api: Api) -> None:
    wrong = copy.deepcopy(VS)
    wrong["metadata"] = {"name": "ratings", "namespace": "books"}
    status, body, _ = await api.call("PUT", f"{VS_URL}/reviews", wrong)
    assert status == 400
    assert {e["field"] for e in body["errors"]} == {"metadata.name", "metadata.namespace"}

    status, body, _ = await api.call("PUT", f"{VS_URL}/reviews", {**VS, "kind": "Gateway"})
    assert status == 400
    assert "kind" in {e["field"] for e in body["errors"]}

    beta = {**VS, "apiVersion": "networking.istio.io/v1beta1"}
    status, body, _ = await api.call("PUT", f"{VS_URL}/reviews", beta)
    assert status == 400
    assert [e["field"] for e in body["errors"]] == ["apiVersion"]


async def test_body_must_hold_one_object(api: Api) -> None:
    two = yaml.safe_dump(VS) + "---\n" + yaml.safe_dump(VS)
    status, body, _ = await api.call("PUT", f"{VS_URL}/reviews", text=two)
    assert status == 400
    assert "exactly one object" in body["error"]
    status, body, _ = await api.call("PUT", f"{VS_URL}/reviews", text="")
    assert status == 400


async def test_post_creates_and_refuses_an_existing_object(api: Api) -> None:
    status, _, _ = await api.call("POST", SVC_URL, SERVICE)
    assert status == 201
    status, body, _ = await api.call("POST", SVC_URL, SERVICE)
    assert status == 409
    assert "already exists" in body["error"]


async def test_store_refusal_is_a_conflict(api: Api) -> None:
    # Two objects in one user file: the API may not rewrite that file.
    (api.config_dir / "both.yaml").write_text(yaml.safe_dump_all([VS, SERVICE]))
    await until(lambda: _has(api, ResourceKey("Service", "default", "reviews")))
    changed = copy.deepcopy(VS)
    changed["spec"]["hosts"] = ["reviews", "reviews.books"]
    status, body, _ = await api.call("PUT", f"{VS_URL}/reviews", changed)
    assert status == 409
    assert "other object" in body["error"]


async def _has(api: Api, key: ResourceKey) -> bool:
    return api.cp.store.get(key) is not None


async def test_dangling_references_come_back_as_warnings(api: Api) -> None:
    _, _, resp = await api.call("PUT", f"{VS_URL}/reviews", VS)
    warnings = resp.headers.getall("Warning", [])
    assert any("spec.http[0].route[0].destination.host" in w for w in warnings), warnings
    await api.call("PUT", f"{SVC_URL}/reviews", SERVICE)
    _, _, resp = await api.call("PUT", f"{VS_URL}/reviews", VS)
    assert resp.headers.getall("Warning", []) == []


INGRESS: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {
        "name": "shop",
        "namespace": "default",
        "annotations": {"kubernetes.io/ingress.class": "istio"},
    },
    "spec": {
        "rules": [
            {
                "host": "shop.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "reviews", "port": {"number": 9080}}},
                        }
                    ]
                },
            }
        ]
    },
}


async def test_gateways_generated_from_ingresses_exist_for_reference_warnings(api: Api) -> None:
    # As in ``analyze``: the Gateway an Ingress generates is not a dangling reference.
    await api.call("PUT", f"{SVC_URL}/reviews", SERVICE)
    generated = "istio-system/shop-istio-autogenerated-k8s-ingress-default"
    bound = copy.deepcopy(VS)
    bound["spec"]["gateways"] = [generated]
    _, _, resp = await api.call("PUT", f"{VS_URL}/reviews", bound)
    assert any("spec.gateways[0]" in w for w in resp.headers.getall("Warning", []))
    ingress_url = "/apis/networking.k8s.io/v1/namespaces/default/ingresses/shop"
    status, _, _ = await api.call("PUT", ingress_url, INGRESS)
    assert status == 201
    bound["spec"]["http"][0]["timeout"] = "5s"
    _, _, resp = await api.call("PUT", f"{VS_URL}/reviews", bound)
    assert resp.headers.getall("Warning", []) == []


async def test_delete(api: Api) -> None:
    await api.call("PUT", f"{VS_URL}/reviews", VS)
    status, body, _ = await api.call("DELETE", f"{VS_URL}/reviews")
    assert status == 200
    assert body["metadata"]["resourceVersion"] == str(api.cp.store.revision)
    assert not (api.config_dir / "default" / "virtualservice-reviews.yaml").exists()
    status, body, _ = await api.call("DELETE", f"{VS_URL}/reviews")
    assert status == 404
    assert "not found" in body["error"]
    status, _, _ = await api.call("GET", f"{VS_URL}/reviews")
    assert status == 404


# -- reads and paths -------------------------------------------------------------


async def test_list_in_a_namespace_and_across_namespaces(api: Api) -> None:
    await api.call("PUT", f"{VS_URL}/reviews", VS)
    other = copy.deepcopy(VS)
    other["metadata"]["namespace"] = "books"
    books = "/apis/networking.istio.io/v1/namespaces/books/virtualservices"
    await api.call("PUT", f"{books}/reviews", other)
    await api.call("PUT", f"{SVC_URL}/reviews", SERVICE)

    status, body, _ = await api.call("GET", VS_URL)
    assert status == 200
    assert body["kind"] == "VirtualServiceList"
    assert [i["metadata"]["namespace"] for i in body["items"]] == ["default"]
    _, body, _ = await api.call("GET", "/apis/networking.istio.io/v1/virtualservices")
    assert [i["metadata"]["namespace"] for i in body["items"]] == ["books", "default"]
    _, body, _ = await api.call("GET", "/api/v1/services")
    assert [i["kind"] for i in body["items"]] == ["Service"]


@pytest.mark.parametrize(
    "path",
    [
        "/apis/networking.istio.io/v1/namespaces/default/widgets",
        "/apis/example.com/v1/namespaces/default/virtualservices",
        "/apis/networking.istio.io/v2/virtualservices",
        "/api/v1/virtualservices",
        "/apis/networking.istio.io",
    ],
)
async def test_unknown_resource_group_or_version_is_404(api: Api, path: str) -> None:
    status, body, _ = await api.call("GET", path)
    assert status == 404
    assert body["error"]


async def test_an_applied_object_reaches_configz_and_the_snapshot(api: Api) -> None:
    await api.call("PUT", f"{SVC_URL}/reviews", SERVICE)
    await api.call("PUT", f"{VS_URL}/reviews", VS)

    async def in_snapshot() -> bool:
        kinds = {r.kind for r in api.cp.generator.snapshot.resources}
        return {"Service", "VirtualService"} <= kinds

    await until(in_snapshot)
    _, configz, _ = await api.call("GET", "/debug/configz")
    listed = {(r["kind"], r["name"]) for r in configz["resources"]}
    assert {("Service", "reviews"), ("VirtualService", "reviews")} <= listed
    files = {f["file"] for f in configz["files"]}
    assert str(api.config_dir / "default" / "virtualservice-reviews.yaml") in files


# -- authorization ---------------------------------------------------------------


async def test_an_explicit_token_is_required(tmp_path: Path) -> None:
    cp, _ = await _start(tmp_path, api_token="s3cret")
    base = f"http://127.0.0.1:{cp.http_port}"
    try:
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                async with session.get(base + VS_URL, headers=headers) as resp:
                    assert resp.status == 401
                async with session.put(base + f"{VS_URL}/reviews", json=VS, headers=headers) as r:
                    assert r.status == 401
            assert cp.store.revision == 0
            good = {"Authorization": "Bearer s3cret"}
            async with session.put(base + f"{VS_URL}/reviews", json=VS, headers=good) as resp:
                assert resp.status == 201
            async with session.get(base + VS_URL, headers=good) as resp:
                assert resp.status == 200
            async with session.get(base + "/ready") as resp:
                assert resp.status == 200  # liveness needs no token
    finally:
        await cp.close()


# -- a composite store (files + live registrations) --------------------------------

WORKLOAD_ENTRY = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v1-pod
  namespace: default
spec:
  address: 127.0.0.2
  labels:
    app: reviews
"""


async def test_composite_store_behind_the_api(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    registered = load_text(WORKLOAD_ENTRY, "<registration>").resources
    overlay = MemoryStore(registered)
    store = CompositeStore(FileStore(config_dir, poll_interval=0.02), [overlay])
    settings = ControlPlaneSettings(config_paths=(str(config_dir),), xds_port=0, http_port=0)
    cp = ControlPlane(settings, store=store)
    await cp.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(cp, session, f"http://127.0.0.1:{cp.http_port}", config_dir)
            entries = "/apis/networking.istio.io/v1/namespaces/default/workloadentries"
            status, body, _ = await api.call("GET", entries)
            assert [i["metadata"]["name"] for i in body["items"]] == ["reviews-v1-pod"]
            # A live registration is not configuration: it cannot be deleted here.
            status, body, _ = await api.call("DELETE", f"{entries}/reviews-v1-pod")
            assert status == 409
            assert overlay.get(registered[0].key) is not None
            # Writes land in the files; /debug/configz still lists them.
            status, _, _ = await api.call("PUT", f"{VS_URL}/reviews", VS)
            assert status == 201
            assert (config_dir / "default" / "virtualservice-reviews.yaml").is_file()

            async def in_configz() -> bool:
                _, configz, _ = await api.call("GET", "/debug/configz")
                kinds = {r["kind"] for r in configz["resources"]}
                return {"VirtualService", "WorkloadEntry"} <= kinds and bool(configz["files"])

            await until(in_configz)
    finally:
        await cp.close()
