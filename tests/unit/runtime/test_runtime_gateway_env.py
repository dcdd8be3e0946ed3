"""A confined gateway's environment: only what it needs, and the supervisor's pilotfish."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.runtime.gateways import GatewayProcess, GatewaySpec
from pilotfish.runtime.isolation import Isolation


def _gateway(tmp_path: Path, isolation: Isolation | None) -> GatewayProcess:
    spec = GatewaySpec("istio-ingressgateway", "istio-system", (), "127.0.0.1", 15000, 15021)
    return GatewayProcess(
        spec, "127.0.0.1:15010", tmp_path, tmp_path, "python3", isolation=isolation
    )


def test_a_confined_gateway_runs_the_supervisors_pilotfish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/src/of/this/pilotfish")
    monkeypatch.setenv("SECRET_TOKEN", "x")
    monkeypatch.delenv("LANG", raising=False)
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("TZ", raising=False)
    env = _gateway(tmp_path, Isolation.for_state_dir(tmp_path))._env()
    assert env is not None
    assert env["PYTHONPATH"] == "/src/of/this/pilotfish"
    assert set(env) == {"PATH", "HOME", "PYTHONUNBUFFERED", "PYTHONPATH"}
    # A locale is passed on, as to confined sidecar agents; secrets are not.
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = _gateway(tmp_path, Isolation.for_state_dir(tmp_path))._env()
    assert env is not None and env["LANG"] == "C.UTF-8" and "SECRET_TOKEN" not in env
    monkeypatch.delenv("PYTHONPATH")
    env = _gateway(tmp_path, Isolation.for_state_dir(tmp_path))._env()
    assert env is not None and "PYTHONPATH" not in env
    # Unconfined, it inherits the supervisor's environment as it is.
    assert _gateway(tmp_path, None)._env() is None
