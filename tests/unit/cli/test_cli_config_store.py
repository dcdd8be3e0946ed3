"""``--config-store`` and the etcd options of ``control-plane`` and ``up``: refused
combinations are named before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pilotfish.cli.main import cli
from pilotfish.cli.up import _supervisor_argv
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.store.etcd_target import EtcdTls


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config-store", "http://a:2379"], "etcd://HOST:PORT"),
        (["--config-store", "etcd://a"], "is not HOST:PORT"),
        ([], "give --config (files) or --config-store etcd://"),
        (["--config-store", "etcd://a:2379", "--config", "."], "--config reads files"),
        (["--config-store", "etcd://a:2379", "--etcd-cacert", "pyproject.toml"], "etcds://"),
        (["--config-store", "etcds://a:2379", "--etcd-cert", "pyproject.toml"], "go together"),
        (["--config-store", "etcd://a:2379", "--etcd-prefix", "/x/"], "must start with '/'"),
    ],
)
def test_control_plane_refuses_unusable_store_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["control-plane", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_up_refuses_two_stores(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("")
    result = CliRunner().invoke(
        cli,
        ["up", str(manifest), "--addons", "etcd", "--config-store", "etcd://a:2379"],
    )
    assert result.exit_code == 2, result.output
    assert "pick one" in result.output


def test_the_detached_supervisor_gets_the_store_options(tmp_path: Path) -> None:
    settings = RuntimeSettings(
        state_dir=tmp_path,
        config_store="etcds://a:2379",
        etcd_tls=EtcdTls("ca.pem", "c.pem", "k.pem"),
        etcd_prefix="/mesh",
    )
    argv = _supervisor_argv(settings)
    joined = " ".join(argv)
    assert "--config-store etcds://a:2379" in joined
    assert "--etcd-prefix /mesh" in joined
    assert f"--etcd-cacert {Path('ca.pem').resolve()}" in joined
    assert f"--etcd-key {Path('k.pem').resolve()}" in joined
