"""Authentication of the control plane's HTTP API, against a real control plane on loopback.

The route walk enumerates ``app.router.routes()``, so a route added later (by
the control plane or, as the runtime does, from outside) cannot be forgotten.
"""

from __future__ import annotations

import itertools
import logging
import re
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDictProxy
from yarl import URL

from pilotfish.controlplane.api_token import (
    ApiToken,
    ApiTokenError,
    load_or_create_token_file,
    read_token_file,
)
from pilotfish.controlplane.auth import PUBLIC_ROUTES
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings

_ANY_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


@dataclass
class Served:
    cp: ControlPlane
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.cp.http_port}"

    async def status(
        self, method: str, path: str, token: str | None = None
    ) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        url = URL(self.base + path, encoded=True)
        async with self.session.request(method, url, headers=headers) as resp:
            body = await resp.read()
            return resp.status, body, resp.headers


async def _runtime_pods(request: web.Request) -> web.Response:
    return web.json_response({"pods": []})


def _settings(tmp_path: Path, **kw: Any) -> ControlPlaneSettings:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    return ControlPlaneSettings(config_paths=(str(config),), xds_port=0, http_port=0, **kw)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    cp = ControlPlane(_settings(tmp_path, api_token_file=str(tmp_path / "state" / "api-token")))
    # As runtime/mesh.py does: a route added from outside, before start.
    cp.add_route("GET", "/runtime/pods", _runtime_pods)
    await cp.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Served(cp, session)
    finally:
        await cp.close()


async def _resolve(app: web.Application, method: str, path: str) -> web.AbstractRoute:
    request = make_mocked_request(method, path, app=app)
    return (await app.router.resolve(request)).route


async def _walk(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, concrete path, canonical path) for every route of ``app``: each path
    is one the router resolves to exactly that route (placeholders tried as ``x``
    and ``/x``, for tails such as ``{tail:(/.*)?}``)."""
    out: list[tuple[str, str, str]] = []
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        info = resource.get_info()
        template = str(info.get("formatter") or info.get("path") or resource.canonical)
        names = re.findall(r"\{(\w+)\}", template)
        for method in _ANY_METHODS if route.method == "*" else (route.method,):
            for values in itertools.product(("x", "/x"), repeat=len(names)):
                path = template
                for name, value in zip(names, values, strict=True):
                    path = path.replace("{" + name + "}", value)
                if await _resolve(app, method, path) is route:
                    out.append((method, path, resource.canonical))
                    break
            else:
                raise AssertionError(f"no concrete path reaches {method} {template}")
    return out


async def test_every_route_outside_the_allow_list_requires_the_token(served: Served) -> None:
    walked = await _walk(served.cp.http.app)
    canonicals = {canonical for _, _, canonical in walked}
    # The walk is not vacuous: it reaches every family of routes.
    for expected in (
        "/debug/configz",
        "/debug/config_dump",
        "/debug/syncz",
        "/debug/meshconfig",
        "/runtime/pods",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
        "/api/{version}/namespaces/{namespace}/{plural}",
        "/ready",
        "/metrics",
    ):
        assert expected in canonicals, (expected, sorted(canonicals))
    methods = {m for m, _, c in walked if c.startswith("/apis/")}
    assert {"GET", "PUT", "POST", "DELETE"} <= methods

    token = served.cp.api_token.reveal()
    for method, path, canonical in walked:
        if canonical in PUBLIC_ROUTES:
            status, _, _ = await served.status(method, path)
            assert status == 200, (method, path)
            continue
        for presented in (None, "wrong", token + "x", token[:-1], ""):
            status, body, headers = await served.status(method, path, presented)
            assert status == 401, (method, path, presented, status)
            assert headers["WWW-Authenticate"].startswith("Bearer")
            if method != "HEAD":
                assert b"Authorization: Bearer" in body
        status, _, _ = await served.status(method, path, token)
        assert status != 401, (method, path)
    assert served.cp.store.revision == 0  # no refused write got through


async def test_unknown_paths_and_odd_spellings_do_not_bypass(served: Served) -> None:
    token = served.cp.api_token.reveal()
    for path in (
        "/nowhere",
        "/ready/../debug/configz",
        "/metrics/../api/v1/services",
        "/ready/%2e%2e/debug/configz",
        "//debug/configz",
        "/debug/configz/",
        "/DEBUG/configz",
        "/api/v1/../../debug/syncz",
    ):
        status, body, _ = await served.status("GET", path)
        assert status == 401, (path, status, body)
    status, _, _ = await served.status("GET", "/nowhere", token)
    assert status == 404
    # The scheme is case-insensitive, extra spaces are ignored; other schemes are not tokens.
    url = served.base + "/debug/configz"
    for value, expected in (
        (f"bearer {token}", 200),
        (f"Bearer   {token} ", 200),
        (f"Basic {token}", 401),
        (token, 401),
    ):
        async with served.session.get(url, headers={"Authorization": value}) as resp:
            assert resp.status == expected, value


async def test_the_answer_is_json_and_names_no_token(served: Served) -> None:
    async with served.session.put(
        served.base + "/apis/networking.istio.io/v1/namespaces/default/virtualservices/r",
        json={"kind": "VirtualService"},
        headers={"Authorization": "Bearer not-the-token-123"},
    ) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="pilotfish"'
        body = await resp.json()
    assert body["error"] == "a valid 'Authorization: Bearer <token>' header is required"
    assert "not-the-token-123" not in str(body)
    assert served.cp.api_token.reveal() not in str(body)


# -- where the token comes from --------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "api-token"
    token, created = load_or_create_token_file(path)
    assert created
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert len(token.reveal()) >= 40
    assert path.read_text() == token.reveal() + "\n"
    again, created = load_or_create_token_file(path)
    assert not created
    assert again.reveal() == token.reveal()
    assert read_token_file(path).reveal() == token.reveal()
    assert [p.name for p in path.parent.iterdir()] == ["api-token"]  # no temporary file left
    other, _ = load_or_create_token_file(tmp_path / "other" / "api-token")
    assert other.reveal() != token.reveal()


def test_unsafe_or_broken_token_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "api-token"
    path.write_text("a-token-others-may-read\n")
    path.chmod(0o644)
    with pytest.raises(ApiTokenError) as err:
        load_or_create_token_file(path)
    assert f"chmod 600 {path}" in str(err.value)
    assert "a-token-others-may-read" not in str(err.value)

    path.chmod(0o600)
    assert load_or_create_token_file(path)[0].reveal() == "a-token-others-may-read"

    for content, reason in (("", "empty"), ("two words\n", "without spaces")):
        path.write_text(content)
        with pytest.raises(ApiTokenError, match=reason) as err:
            load_or_create_token_file(path)
        assert str(path) in str(err.value)
        assert "two" not in str(err.value)

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ApiTokenError, match="writable by group or others"):
        load_or_create_token_file(shared / "api-token")
    assert not (shared / "api-token").exists()


def test_the_token_never_shows_in_repr() -> None:
    token = ApiToken("very-secret-value")
    assert "very-secret-value" not in repr(token)
    assert "very-secret-value" not in str(token)
    assert "very-secret-value" not in f"{token!r} {token}"
    settings = ControlPlaneSettings(api_token="very-secret-value")
    assert "very-secret-value" not in repr(settings)
    assert token.matches("very-secret-value")
    assert not token.matches("very-secret-valuE")
    assert not token.matches("")
    with pytest.raises(ApiTokenError):
        ApiToken("with space")


async def test_control_plane_reuses_its_token_across_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "state" / "api-token"
    settings = _settings(tmp_path, api_token_file=str(token_file))
    tokens: list[str] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            cp = ControlPlane(settings)
            await cp.start()
            try:
                tokens.append(cp.api_token.reveal())
                headers = {"Authorization": f"Bearer {tokens[0]}"}
                url = f"http://127.0.0.1:{cp.http_port}/debug/configz"
                async with session.get(url, headers=headers) as resp:
                    assert resp.status == 200  # the first run's token still works
            finally:
                await cp.close()
    assert tokens[0] == tokens[1] == token_file.read_text().strip()
    assert _mode(token_file) == 0o600
    assert any(str(token_file) in r.getMessage() for r in caplog.records)
    assert not any(tokens[0] in r.getMessage() for r in caplog.records)


async def test_an_explicit_token_wins_over_the_file(tmp_path: Path) -> None:
    token_file = tmp_path / "api-token"
    cp = ControlPlane(_settings(tmp_path, api_token="given-token", api_token_file=str(token_file)))
    await cp.start()
    try:
        assert cp.api_token.reveal() == "given-token"
        assert not token_file.exists()
    finally:
        await cp.close()


async def test_without_a_token_or_file_a_random_token_is_required(tmp_path: Path) -> None:
    cp = ControlPlane(_settings(tmp_path))
    with pytest.raises(RuntimeError, match="not started"):
        cp.api_token  # noqa: B018
    await cp.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{cp.http_port}/api/v1/services"
            async with session.get(url) as resp:
                assert resp.status == 401
            headers = {"Authorization": f"Bearer {cp.api_token.reveal()}"}
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 200
    finally:
        await cp.close()


async def test_an_unsafe_token_file_stops_the_start(tmp_path: Path) -> None:
    token_file = tmp_path / "api-token"
    token_file.write_text("readable-by-all\n")
    token_file.chmod(0o644)
    cp = ControlPlane(_settings(tmp_path, api_token_file=str(token_file)))
    try:
        with pytest.raises(ApiTokenError, match="chmod 600"):
            await cp.start()
        assert cp.http_port == 0  # nothing was served
    finally:
        await cp.close()
