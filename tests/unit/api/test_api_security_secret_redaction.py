"""Secret values never leave the control plane: REST reads, ``pilotfish get``,
``/debug/configz`` and logs. Against a real control plane on loopback, port 0."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from click.testing import CliRunner

from pilotfish.api.core.secret import REDACTED
from pilotfish.cli.main import cli
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from polling import apoll

DEADLINE = 10.0
CANARY = "hunter2-canary-value"
ENCODED = base64.b64encode(CANARY.encode()).decode()
SECRETS_URL = "/api/v1/namespaces/default/secrets"
SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db", "namespace": "default"},
    "type": "Opaque",
    "data": {"password": ENCODED},
    "stringData": {"user": CANARY},
}
REDACTED_SECRET = {
    **SECRET,
    "data": {"password": REDACTED},
    "stringData": {"user": REDACTED},
}


class Api:
    def __init__(self, cp: ControlPlane, session: aiohttp.ClientSession, config: Path) -> None:
        self.cp = cp
        self.session = session
        self.config = config
        self.base = f"http://127.0.0.1:{cp.http_port}"

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {self.cp.api_token.reveal()}"}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as resp:
            return resp.status, await resp.text()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    config = tmp_path / "config"
    config.mkdir()
    cp = ControlPlane(
        ControlPlaneSettings(
            config_paths=(str(config),),
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
            yield Api(cp, session, config)
    finally:
        await cp.close()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it is true, failing after DEADLINE seconds."""
    await apoll(check, "the condition", DEADLINE, interval=0.02, ignore=())


def _no_canary(text: str) -> None:
    assert CANARY not in text and ENCODED not in text


def _metadata_free(doc: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in doc["metadata"].items() if k != "resourceVersion"}
    return {**doc, "metadata": meta}


async def test_rest_reads_and_write_responses_are_redacted(api: Api) -> None:
    status, text = await api.call("PUT", f"{SECRETS_URL}/db", SECRET)
    assert status == 201, text
    _no_canary(text)
    assert _metadata_free(json.loads(text)) == REDACTED_SECRET

    # The stored object keeps the real values: only what leaves is redacted.
    stored = next(r for r in api.cp.store.list("Secret") if r.name == "db")
    assert stored.raw["data"] == {"password": ENCODED}

    status, text = await api.call("GET", f"{SECRETS_URL}/db")
    assert status == 200
    _no_canary(text)
    assert _metadata_free(json.loads(text)) == REDACTED_SECRET

    for url in (SECRETS_URL, "/api/v1/secrets"):
        status, text = await api.call("GET", url)
        assert status == 200
        _no_canary(text)
        (item,) = json.loads(text)["items"]
        assert item["data"] == {"password": REDACTED} and item["type"] == "Opaque"

    status, text = await api.call("DELETE", f"{SECRETS_URL}/db")
    assert status == 200
    _no_canary(text)
    assert json.loads(text)["data"] == {"password": REDACTED}


async def test_reapplying_a_read_back_secret_is_refused(api: Api) -> None:
    status, text = await api.call("PUT", f"{SECRETS_URL}/db", SECRET)
    assert status == 201
    read_back = json.loads(text)
    status, text = await api.call("PUT", f"{SECRETS_URL}/db", read_back)
    assert status == 400
    assert "placeholder" in text
    stored = next(r for r in api.cp.store.list("Secret") if r.name == "db")
    assert stored.raw["stringData"] == {"user": CANARY}


async def test_invalid_secret_errors_name_keys_not_values(api: Api) -> None:
    bad = {**SECRET, "data": {"password": CANARY + "!"}, "type": "kubernetes.io/tls"}
    status, text = await api.call("PUT", f"{SECRETS_URL}/db", bad)
    assert status == 400
    assert "'password' is not valid base64" in text
    assert "needs key 'tls.crt'" in text
    _no_canary(text)


async def test_configz_lists_identity_only(api: Api) -> None:
    status, _ = await api.call("PUT", f"{SECRETS_URL}/db", SECRET)
    assert status == 201

    async def listed() -> bool:
        status, text = await api.call("GET", "/debug/configz")
        return status == 200 and any(r["kind"] == "Secret" for r in json.loads(text)["resources"])

    await until(listed)
    status, text = await api.call("GET", "/debug/configz")
    _no_canary(text)
    entry = next(r for r in json.loads(text)["resources"] if r["kind"] == "Secret")
    assert (entry["namespace"], entry["name"]) == ("default", "db")


async def test_cli_get_never_prints_values(api: Api) -> None:
    status, _ = await api.call("PUT", f"{SECRETS_URL}/db", SECRET)
    assert status == 201

    def get(*args: str) -> str:
        result = CliRunner().invoke(
            cli,
            ["get", *args, "--control-plane", api.base],
            env={"PILOTFISH_API_TOKEN": api.cp.api_token.reveal()},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        return result.output

    # The CLI is synchronous: run it in a thread so this loop keeps serving the API.
    as_yaml = await asyncio.to_thread(get, "secret", "db", "-o", "yaml")
    _no_canary(as_yaml)
    (doc,) = list(yaml.safe_load_all(as_yaml))
    assert doc["data"] == {"password": REDACTED} and doc["stringData"] == {"user": REDACTED}

    as_json = await asyncio.to_thread(get, "secrets", "-o", "json")
    _no_canary(as_json)
    assert json.loads(as_json)["items"][0]["data"] == {"password": REDACTED}

    table = await asyncio.to_thread(get, "secrets", "-A")
    _no_canary(table)
    header, row = table.strip().splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "TYPE", "DATA"]
    assert row.split() == ["default", "db", "Opaque", "2"]


async def test_logs_of_a_broken_secret_file_hold_no_values(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    doc = {**SECRET, "data": {"password": CANARY + "!"}}
    (api.config / "secret.yaml").write_text(yaml.safe_dump(doc))
    # Errors are logged when the configuration changes: add a valid object too.
    (api.config / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"
    )

    async def reported() -> bool:
        return any("not valid base64" in r.getMessage() for r in caplog.records)

    await until(reported)
    for record in caplog.records:
        _no_canary(record.getMessage())
