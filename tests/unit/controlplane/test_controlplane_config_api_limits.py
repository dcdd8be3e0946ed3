"""The config API under hostile bodies: 400/413 with a JSON error naming the
limit, nothing stored, the serving configuration untouched (a real control
plane on loopback, port 0, real HTTP)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bench.fuzz_corpus import ALIAS_BOMB, BILLION_LAUGHS, deep_json, deep_yaml_flow

from pilotfish.api.limits import DEFAULT_LIMITS
from pilotfish.api.resource import ResourceKey
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings

VS_URL = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews"
VS_KEY = ResourceKey("VirtualService", "default", "reviews")
VS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
}


@dataclass
class Api:
    cp: ControlPlane
    session: aiohttp.ClientSession
    base: str
    config_dir: Path

    async def put(self, data: Any) -> tuple[int, dict[str, Any]]:
        async with self.session.put(self.base + VS_URL, data=data) as resp:
            body = await resp.read()
            assert resp.content_type == "application/json", body[:200]
            return resp.status, json.loads(body)

    def files(self) -> list[tuple[str, bytes]]:
        return sorted((str(p), p.read_bytes()) for p in self.config_dir.rglob("*") if p.is_file())


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    settings = ControlPlaneSettings(
        config_paths=(str(config_dir),), xds_port=0, http_port=0, poll_interval=0.02
    )
    cp = ControlPlane(settings)
    await cp.start()
    try:
        headers = {"Authorization": f"Bearer {cp.api_token.reveal()}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            yield Api(cp, session, f"http://127.0.0.1:{cp.http_port}", config_dir)
    finally:
        await cp.close()


async def _assert_refused(api: Api, data: Any, status: int, error: str) -> dict[str, Any]:
    """PUT ``data`` over a served VirtualService: refused, and nothing changed."""
    created, _ = await api.put(json.dumps(VS))
    assert created in (200, 201)
    served, revision, files = api.cp.store.get(VS_KEY), api.cp.store.revision, api.files()
    code, body = await api.put(data)
    assert code == status, body
    assert error in body["error"], body
    assert api.cp.store.get(VS_KEY) is served
    assert api.cp.store.revision == revision
    assert api.files() == files
    return body


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (ALIAS_BOMB, 7, "YAML aliases expand to more than 10000 nodes (limit)"),
        (BILLION_LAUGHS, 5, "YAML aliases expand to more than 10000 nodes (limit)"),
        (deep_yaml_flow(5000), 1, "nesting deeper than 100 levels (limit)"),
        (deep_json(5000), 1, "nesting deeper than 100 levels (limit)"),
        ("---\n" * 10_001, 10_001, "more than 10000 YAML documents (limit)"),
    ],
    ids=["alias-bomb", "billion-laughs", "deep-yaml", "deep-json", "documents"],
)
async def test_a_body_beyond_a_parse_limit_is_a_400_naming_it(
    api: Api, text: str, line: int, message: str
) -> None:
    body = await _assert_refused(api, text, 400, message)
    assert body["errors"] == [
        {
            "severity": "error",
            "file": "<request>",
            "line": line,
            "kind": "",
            "namespace": "",
            "name": "",
            "field": "",
            "message": message,
        }
    ]


async def test_a_body_with_too_many_nodes_is_a_400(api: Api) -> None:
    nodes = DEFAULT_LIMITS.max_body_nodes
    text = json.dumps({**VS, "spec": {"hosts": ["reviews"] * nodes}})
    await _assert_refused(api, text, 400, f"more than {nodes} YAML nodes (limit)")


async def test_a_body_larger_than_the_limit_is_a_413(api: Api) -> None:
    big = b" " * (DEFAULT_LIMITS.max_body_bytes + 1)
    body = await _assert_refused(api, big, 413, "larger than 1048576 bytes (limit)")
    assert body == {
        "error": "the request body is larger than 1048576 bytes (limit)",
        "errors": [],
        "warnings": [],
    }


async def test_a_chunked_body_over_the_limit_is_a_413(api: Api) -> None:
    """Without Content-Length the server counts while it reads."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3 * DEFAULT_LIMITS.max_body_bytes // 65536):
            yield b"#" * 65536

    await _assert_refused(api, chunks(), 413, "larger than 1048576 bytes (limit)")


async def test_a_body_that_is_not_utf8_is_a_400(api: Api) -> None:
    await _assert_refused(api, b"kind: \xff\xfe\n", 400, "not UTF-8")


async def test_a_tag_without_constructor_is_a_400_not_a_500(api: Api) -> None:
    text = json.dumps(VS).replace('["reviews"]', '[!custom "reviews"]')
    await _assert_refused(api, text, 400, "could not determine a constructor")


async def test_a_binary_value_is_refused_not_stored(api: Api) -> None:
    doc = {**VS, "metadata": {**VS["metadata"], "labels": {"a": "PLACEHOLDER"}}}
    text = json.dumps(doc).replace('"PLACEHOLDER"', "!!binary aGk=")
    await _assert_refused(api, text, 400, "binary values (!!binary) are not supported")


async def test_the_control_plane_keeps_serving_after_hostile_bodies(api: Api) -> None:
    for text in (ALIAS_BOMB, deep_json(5000)):
        status, _ = await api.put(text)
        assert status == 400
    async with api.session.get(api.base + "/ready") as resp:
        assert resp.status == 200
    status, _ = await api.put(json.dumps(VS))
    assert status == 201
    assert api.cp.store.get(VS_KEY) is not None
