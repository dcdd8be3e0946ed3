"""``pilotfish dashboard``: the URL, and a clear error without a mesh."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pilotfish.cli.main import cli


def test_print_url_only_prints() -> None:
    result = CliRunner().invoke(cli, ["dashboard", "--print-url", "--port", "20555"])
    assert result.exit_code == 0
    assert result.output == "http://127.0.0.1:20555/\n"


def test_without_a_mesh_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["dashboard", "--state-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert f"no mesh is running from {tmp_path}" in result.output


def test_server_command_documents_its_backends() -> None:
    result = CliRunner().invoke(cli, ["dashboard-server", "--help"])
    assert result.exit_code == 0
    for option in ("--prometheus", "--tracing", "--control-plane", "--token-file", "--port"):
        assert option in result.output
