"""The mesh config file: parsing, errors with file and line, and its effect on the mesh."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
import yaml
from click.testing import CliRunner

from pilotfish.api.loader import load_text
from pilotfish.cli import control_plane as cli_control_plane
from pilotfish.cli.control_plane import control_plane
from pilotfish.cli.get import get
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.ir import ForwardAction
from pilotfish.model.mesh_config import (
    MeshConfig,
    MeshConfigError,
    load_mesh_config,
    with_overrides,
)
from pilotfish.model.mesh_config import parse_mesh_config as parse
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import build_snapshot
from pilotfish.store import MemoryStore
from pilotfish.translate.http_routes import DEFAULT_RETRY
from pilotfish.translate.sidecar import sidecar_outbound

FULL = """\
rootNamespace: mesh-root
trustDomain: example.org
defaultHttpRetryPolicy:
  attempts: 5
  perTryTimeout: 2s
  retryOn: gateway-error,503
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
accessLogFile: /dev/stdout
enableAutoMtls: false
defaultConfig:
  holdApplicationUntilProxyStarts: true
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
"""


def test_defaults_match_istio() -> None:
    mc = parse("")
    assert mc == MeshConfig()
    assert (mc.root_namespace, mc.trust_domain, mc.outbound_mode) == (
        "istio-system",
        "cluster.local",
        "ALLOW_ANY",
    )
    assert mc.enable_auto_mtls and not mc.access_log and mc.default_http_retry_policy is None


def test_every_supported_field() -> None:
    mc = parse(FULL)
    assert mc.root_namespace == "mesh-root" and mc.trust_domain == "example.org"
    assert mc.outbound_mode == "REGISTRY_ONLY" and mc.access_log
    assert not mc.enable_auto_mtls
    retry = mc.default_http_retry_policy
    assert retry is not None and retry.attempts == 5 and retry.per_try_timeout == "2s"
    dumped = mc.to_json()
    assert dumped["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert dumped["defaultHttpRetryPolicy"]["retryOn"] == "gateway-error,503"


def test_unknown_fields_are_errors_with_file_and_line() -> None:
    text = "rootNamespace: x\nmeshMTLS: {}\ndefaultHttpRetryPolicy:\n  attempts: 2\n  tries: 3\n"
    with pytest.raises(MeshConfigError) as info:
        parse(text, "mesh.yaml")
    found = {(d.field, d.source.line if d.source else 0) for d in info.value.diagnostics}
    assert found == {("meshMTLS", 2), ("defaultHttpRetryPolicy.tries", 5)}
    assert "mesh.yaml:2: meshMTLS: unknown field" in str(info.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("outboundTrafficPolicy: {mode: DENY}\n", "outboundTrafficPolicy.mode"),
        ("accessLogFile: /var/log/envoy.log\n", "accessLogFile"),
        ("defaultHttpRetryPolicy: {attempts: 2, perTryTimeout: soon}\n", "defaultHttpRetryPolicy"),
        ("enableAutoMtls: maybe\n", "enableAutoMtls"),
        ("- a list\n", ""),
        ("a: 1\n---\nb: 2\n", ""),
    ],
)
def test_invalid_values(text: str, field: str) -> None:
    with pytest.raises(MeshConfigError) as info:
        parse(text, "m.yaml")
    assert any(d.field.startswith(field) for d in info.value.diagnostics), str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(MeshConfigError, match="cannot read"):
        load_mesh_config(tmp_path / "missing.yaml")


def _default_route_retry(snapshot_kw: dict[str, object]):  # type: ignore[no-untyped-def]
    result = load_text(SERVICE, "svc.yaml")
    snap = build_snapshot(result.resources, 1, **snapshot_kw)  # type: ignore[arg-type]
    view = ProxyView("sidecar", "default", interception="REDIRECT", bind_ip="0.0.0.0")
    out = sidecar_outbound(snap, view)
    rc = next(r for r in out.route_configs if r.name == "9080")
    action = rc.virtual_hosts[0].routes[0].action
    assert isinstance(action, ForwardAction)
    return action.retry


def test_default_retry_policy_replaces_istio_default() -> None:
    assert _default_route_retry({}) == DEFAULT_RETRY
    got = _default_route_retry({"mesh": parse(FULL)})
    assert got is not None and got.attempts == 5 and got.per_try_timeout_ms == 2000
    assert got.retry_on == "gateway-error,retriable-status-codes"
    assert got.retriable_status_codes == (503,)
    off = parse("defaultHttpRetryPolicy: {attempts: 0}\n")
    assert _default_route_retry({"mesh": off}) is None


def test_mesh_config_change_is_a_config_change() -> None:
    first = build_snapshot((), 1)
    same = build_snapshot((), 2, first)
    changed = build_snapshot(
        (), 3, same, mesh=parse("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
    )
    assert same.config_generation == first.config_generation
    assert changed.config_generation == same.config_generation + 1


def test_settings_take_the_files_values() -> None:
    settings = ControlPlaneSettings(mesh=parse(FULL))
    assert settings.mesh.root_namespace == "mesh-root"
    assert settings.mesh.trust_domain == "example.org"
    assert settings.mesh.access_log
    assert ControlPlaneSettings().mesh == MeshConfig()


def test_overrides_are_applied_once_and_only_when_given() -> None:
    mesh = parse(FULL)
    assert with_overrides(mesh) is mesh
    changed = with_overrides(mesh, trust_domain="other.org", access_log=False)
    assert changed.trust_domain == "other.org" and not changed.access_log
    assert changed.root_namespace == "mesh-root"
    assert with_overrides(MeshConfig(), access_log=True).to_json()["accessLogFile"] == "/dev/stdout"
    # The snapshot carries the very object the settings hold.
    snapshot = build_snapshot((), 1, mesh=changed)
    assert snapshot.mesh is changed and snapshot.trust_domain == "other.org"


def test_cli_trust_domain_wins_only_when_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text(FULL)
    seen: list[ControlPlaneSettings] = []

    async def fake_serve(settings: ControlPlaneSettings) -> None:
        seen.append(settings)

    monkeypatch.setattr(cli_control_plane, "_serve", fake_serve)
    base = ["--config", str(tmp_path), "--mesh-config", str(mesh_file)]
    for extra in ([], ["--trust-domain", "flag.org"]):
        result = CliRunner().invoke(control_plane, [*base, *extra])
        assert result.exit_code == 0, result.output
    CliRunner().invoke(control_plane, ["--config", str(tmp_path)])
    assert [s.mesh.trust_domain for s in seen] == ["example.org", "flag.org", "cluster.local"]
    assert seen[2].mesh == MeshConfig()


def test_cli_reports_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "mesh.yaml"
    bad.write_text("rootNamespace: x\noutboundTrafficPolicy:\n  mode: NOPE\n")
    result = CliRunner().invoke(
        control_plane, ["--config", str(tmp_path), "--mesh-config", str(bad)]
    )
    assert result.exit_code == 2
    assert f"{bad}:3: outboundTrafficPolicy.mode" in result.output


async def test_served_and_shown_by_get(tmp_path: Path) -> None:
    store = MemoryStore()
    settings = ControlPlaneSettings(xds_port=0, http_port=0, mesh=parse(FULL))
    cp = ControlPlane(settings, store=store)
    await cp.start()
    try:
        assert cp.generator.snapshot.outbound_traffic_policy == "REGISTRY_ONLY"
        url = f"http://127.0.0.1:{cp.http_port}"
        token = cp.api_token.reveal()
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                url + "/debug/meshconfig", headers={"Authorization": f"Bearer {token}"}
            ) as resp,
        ):
            body = await resp.json()
        assert body["trustDomain"] == "example.org"
        assert body["outboundTrafficPolicy"]["mode"] == "REGISTRY_ONLY"
        runner = CliRunner(env={"PILOTFISH_API_TOKEN": token})
        as_yaml = await asyncio.to_thread(
            runner.invoke, get, ["meshconfig", "--control-plane", url]
        )
        assert as_yaml.exit_code == 0, as_yaml.output
        assert yaml.safe_load(as_yaml.output)["rootNamespace"] == "mesh-root"
        as_json = await asyncio.to_thread(
            runner.invoke, get, ["meshconfig", "-o", "json", "--control-plane", url]
        )
        assert json.loads(as_json.output)["accessLogFile"] == "/dev/stdout"
    finally:
        await cp.close()


def test_drain_duration_is_read_and_checked() -> None:
    mesh = parse("defaultConfig:\n  drainDuration: 1.5s\n", "mesh.yaml")
    assert mesh.proxy_defaults.drain_seconds == 1.5
    assert parse("{}", "mesh.yaml").proxy_defaults.drain_seconds is None
    with pytest.raises(MeshConfigError, match=r"mesh.yaml:2: defaultConfig.drainDuration"):
        parse("defaultConfig:\n  drainDuration: soon\n", "mesh.yaml")
