"""``POST /apis/pilotfish.io/v1/apply`` against a real control plane on loopback, port 0."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pilotfish.api.loader import load_text
from pilotfish.api.resource import ResourceKey
from pilotfish.controlplane import apply_api
from pilotfish.controlplane.admission import judge
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from polling import apoll

DEADLINE = 10.0
APPLY = "/apis/pilotfish.io/v1/apply"
VS_KEY = ResourceKey("VirtualService", "default", "reviews")
DR_KEY = ResourceKey("DestinationRule", "default", "reviews")

SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]},
}


def vs(subset: str, name: str = "reviews") -> dict[str, Any]:
    route = {"destination": {"host": "reviews", "subset": subset}}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": [name], "http": [{"route": [route]}]},
    }


def dr(host: str = "reviews", subsets: tuple[str, ...] = ("v1",)) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {
            "host": host,
            "subsets": [{"name": s, "labels": {"version": s}} for s in subsets],
        },
    }


def items(*objects: dict[str, Any]) -> dict[str, Any]:
    """A request body: each object as if it began at line 10 * (its index + 1) of a.yaml."""
    return {
        "items": [
            {"object": o, "file": "a.yaml", "line": 10 * (i + 1)} for i, o in enumerate(objects)
        ]
    }


class Api:
    def __init__(self, cp: ControlPlane, session: aiohttp.ClientSession, config_dir: Path) -> None:
        self.cp = cp
        self.session = session
        self.config_dir = config_dir

    async def apply(self, body: Any, **query: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.cp.api_token.reveal()}"}
        url = f"http://127.0.0.1:{self.cp.http_port}{APPLY}"
        async with self.session.post(url, json=body, params=query, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.config_dir)) for p in self.config_dir.rglob("*.yaml"))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
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
        )
    )
    await cp.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(cp, session, config_dir)
    finally:
        await cp.close()


async def test_an_error_finding_refuses_the_whole_batch(api: Api) -> None:
    status, body = await api.apply(items(SERVICE, dr(), vs("v9")))
    assert status == 422
    assert "nothing was written" in body["error"] and "force=true" in body["error"]
    errors = [f for f in body["findings"] if f["level"] == "Error"]
    assert errors == [
        {
            "severity": "error",
            "level": "Error",
            "code": "IST0101",
            "file": "a.yaml",
            "line": 30,
            "item": 2,
            "kind": "VirtualService",
            "namespace": "default",
            "name": "reviews",
            "field": "spec.http[0].route[0].destination.subset",
            "message": "subset 'v9' is not defined by any DestinationRule for "
            "'reviews.default.svc.cluster.local'",
        }
    ]
    assert body["results"] == []
    assert api.files() == []
    assert api.cp.store.list() == []


async def test_objects_applied_together_are_written_together(api: Api) -> None:
    revision = api.cp.store.revision
    status, body = await api.apply(items(SERVICE, dr(), vs("v1")))
    assert status == 200, body
    assert [f for f in body["findings"] if f["level"] == "Error"] == []
    assert [(r["kind"], r["change"], r["item"]) for r in body["results"]] == [
        ("Service", "created", 0),
        ("DestinationRule", "created", 1),
        ("VirtualService", "created", 2),
    ]
    assert api.cp.store.revision == revision + 1  # one change
    assert body["resourceVersion"] == str(api.cp.store.revision)
    assert api.files() == [
        "default/destinationrule-reviews.yaml",
        "default/service-reviews.yaml",
        "default/virtualservice-reviews.yaml",
    ]
    status, body = await api.apply(items(SERVICE, dr(subsets=("v1", "v2")), vs("v2")))
    assert status == 200, body
    assert [r["change"] for r in body["results"]] == ["unchanged", "configured", "configured"]


async def test_broken_objects_already_stored_do_not_block(api: Api) -> None:
    # A VirtualService naming a subset nobody defines, written by hand.
    (api.config_dir / "old.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: old\n"
        "spec:\n  hosts: [old]\n  http:\n  - route:\n    - destination:\n"
        "        host: reviews\n        subset: gone\n"
    )

    async def loaded() -> bool:
        return api.cp.store.get(ResourceKey("VirtualService", "default", "old")) is not None

    await apoll(loaded, "the hand-written file", DEADLINE, interval=0.02, ignore=())
    status, body = await api.apply(items(SERVICE))
    assert status == 200, body
    assert body["findings"] == []
    assert api.cp.store.get(ResourceKey("Service", "default", "reviews")) is not None


async def test_dry_run_reports_and_writes_nothing(api: Api) -> None:
    status, body = await api.apply(items(SERVICE, dr(), vs("v1")), dryRun="All")
    assert status == 200, body
    assert body["dryRun"] is True
    assert [r["change"] for r in body["results"]] == ["created"] * 3
    assert api.files() == [] and api.cp.store.list() == []
    # A refused dry run is refused as the real one would be.
    status, body = await api.apply(items(vs("v9")), dryRun="All")
    assert status == 422
    assert api.cp.store.list() == []


async def test_force_writes_and_still_reports_the_errors(api: Api) -> None:
    status, body = await api.apply(items(SERVICE, vs("v9")), force="true")
    assert status == 200, body
    assert [(f["code"], f["level"]) for f in body["findings"]] == [("IST0101", "Error")]
    assert api.cp.store.get(VS_KEY) is not None


async def test_warnings_are_returned_and_written_through(api: Api) -> None:
    status, body = await api.apply(items(dr(host="nowhere")))
    assert status == 200, body
    [warning] = body["findings"]
    assert (warning["code"], warning["level"], warning["field"], warning["line"]) == (
        "IST0174",
        "Warning",
        "spec.host",
        10,
    )
    assert api.cp.store.get(DR_KEY) is not None


async def test_schema_errors_are_400_and_list_every_object(api: Api) -> None:
    bad_vs = vs("v1")
    bad_vs["spec"]["http"][0]["route"][0]["destination"]["hots"] = "x"
    bad_dr = dr()
    bad_dr["spec"]["subsets"][0]["trafficPolicy"] = {"loadBalancer": {"simple": "FASTEST"}}
    status, body = await api.apply(items(SERVICE, bad_vs, bad_dr), force="true")
    assert status == 400
    assert body["error"].startswith("invalid objects: a.yaml:20: VirtualService default/reviews")
    assert {(e["item"], e["line"], e["kind"]) for e in body["errors"]} == {
        (1, 20, "VirtualService"),
        (2, 30, "DestinationRule"),
    }
    assert api.cp.store.list() == [] and api.files() == []


@pytest.mark.parametrize(
    ("body", "query", "message"),
    [
        ({"items": []}, {}, "must be"),
        ({"objects": [SERVICE]}, {}, "must be"),
        ({"items": [{"object": [1]}]}, {}, "items[0]: 'object' must be a mapping"),
        ({"items": [{"object": SERVICE}]}, {"dryRun": "yes"}, "the only value is 'All'"),
        ({"items": [{"object": SERVICE}]}, {"force": "1"}, "use 'true' or 'false'"),
    ],
)
async def test_malformed_requests_are_400(
    api: Api, body: Any, query: dict[str, str], message: str
) -> None:
    status, answer = await api.apply(body, **query)
    assert status == 400
    assert message in answer["error"]


async def test_the_same_object_twice_is_400(api: Api) -> None:
    status, body = await api.apply(items(SERVICE, SERVICE))
    assert status == 400
    assert "is also items[0]" in body["error"]


async def test_a_store_refusal_is_409_and_writes_nothing(api: Api) -> None:
    # The DestinationRule lives in a hand-written file with another object.
    (api.config_dir / "both.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ratings\nspec:\n"
        "  ports:\n  - name: http\n    port: 9080\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n"
        "  name: reviews\nspec:\n  host: reviews\n"
    )

    async def loaded() -> bool:
        return api.cp.store.get(DR_KEY) is not None

    await apoll(loaded, "the hand-written file", DEADLINE, interval=0.02, ignore=())
    status, body = await api.apply(items(SERVICE, dr()))
    assert status == 409
    assert "other object" in body["error"]
    assert api.cp.store.get(ResourceKey("Service", "default", "reviews")) is None


async def test_a_store_change_during_analysis_is_analyzed_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the first analysis runs in its thread, a DestinationRule that defines the
    # VirtualService's subset is written (on the loop, as a file edit would be
    # folded in). The verdict must be on the store as it is when the batch is
    # written: the subset exists by then, so the batch is accepted.
    loop = asyncio.get_running_loop()
    defining = load_text(json.dumps(dr(subsets=("v1", "v9"))), "dr.json").resources[0]
    calls: list[int] = []

    def judge_while_the_store_changes(*args: Any) -> Any:
        calls.append(len(calls))
        if len(calls) == 1:
            written = threading.Event()

            def write() -> None:
                api.cp.store.apply(defining)
                written.set()

            loop.call_soon_threadsafe(write)
            assert written.wait(DEADLINE)
        return judge(*args)

    monkeypatch.setattr(apply_api, "judge", judge_while_the_store_changes)
    status, body = await api.apply(items(SERVICE, vs("v9")))
    assert status == 200, body
    assert len(calls) == 2
    assert api.cp.store.get(VS_KEY) is not None
