"""The `agent` command's flags and its handling of bad input."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pilotfish.cli.agent import agent

FLAGS = [
    "--role",
    "--name",
    "--namespace",
    "--label",
    "--service-account",
    "--ip",
    "--xds-address",
    "--admin-port",
    "--health-port",
    "--health-bind",
    "--interception",
    "--app-address",
    "--app-port",
    "--outbound-port",
    "--inbound-port",
    "--stats-port",
    "--concurrency",
    "--drain-duration",
    "--log-level",
    "--work-dir",
]


def test_help_lists_every_flag() -> None:
    result = CliRunner().invoke(agent, ["--help"])
    assert result.exit_code == 0
    for flag in FLAGS:
        assert flag in result.output, flag


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "novalue"], "key=value"),
        (["--app-port", "80"], "TARGET=APP"),
        (["--xds-address", "host:notaport"], "HOST:PORT"),
        (["--role", "mesh"], "--role"),
    ],
)
def test_bad_flags_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(agent, ["--name", "a", "--namespace", "b", *args])
    assert result.exit_code == 2
    assert message in result.output
