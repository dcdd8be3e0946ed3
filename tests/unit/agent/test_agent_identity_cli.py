"""The identity flags of `pilotfish agent`: defaults and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pilotfish.cli.agent import agent, identity_defaults


def test_help_lists_the_identity_flags() -> None:
    result = CliRunner().invoke(agent, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--ca-address",
        "--ca-token-file",
        "--root-cert-file",
        "--trust-domain",
        "--cert-ttl",
        "--xds-tls",
        "--no-xds-tls",
        "--xds-secure-address",
    ):
        assert flag in result.output, flag


def test_no_ca_means_plain_xds() -> None:
    assert identity_defaults("10.0.0.1", None, None, None, None) == (
        None,
        False,
        ("10.0.0.1", 15011),
    )


def test_a_token_file_enables_the_ca_and_xds_tls_on_the_xds_host() -> None:
    # The CA on 15012 (server TLS), xDS on its mTLS port 15011.
    assert identity_defaults("10.0.0.1", None, "/run/token", None, None) == (
        "10.0.0.1:15012",
        True,
        ("10.0.0.1", 15011),
    )
    assert identity_defaults("fd00::1", None, "/run/token", None, None)[0] == "[fd00::1]:15012"


def test_explicit_values_win() -> None:
    assert identity_defaults(
        "10.0.0.1", "127.0.0.1:9999", "/run/token", False, "127.0.0.2:8888"
    ) == ("127.0.0.1:9999", False, ("127.0.0.2", 8888))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--root-cert-file", "{root}"], "token file"),
        (["--ca-token-file", "{token}"], "root cert file"),
        (["--xds-tls"], "needs a CA"),
        (["--ca-token-file", "{token}", "--root-cert-file", "{root}", "--cert-ttl", "soon"], "20s"),
    ],
)
def test_bad_identity_flags_are_usage_errors(
    extra: list[str], message: str, tmp_path: Path
) -> None:
    token, root = tmp_path / "token", tmp_path / "root.pem"
    token.write_text("t")
    root.write_text("r")
    args = [a.format(token=token, root=root) for a in extra]
    if "--root-cert-file" in args and "--ca-token-file" not in args:
        args += ["--ca-address", "127.0.0.1:15012"]
    result = CliRunner().invoke(agent, ["--name", "a", "--namespace", "b", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
