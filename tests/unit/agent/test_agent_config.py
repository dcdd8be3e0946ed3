"""Agent settings: validation, parsing of user strings, derived values."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from pilotfish.agent.config import (
    AgentConfig,
    ConfigError,
    default_work_dir,
    parse_address,
    parse_label,
    parse_port_mapping,
)
from pilotfish.envoy_binary import ENVOY_ENV_VAR, EnvoyNotFoundError, find_envoy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:15010", ("127.0.0.1", 15010)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:15010", ("::1", 15010)),
        ("pilotfish", ("pilotfish", 15010)),
        ("[::1]", ("::1", 15010)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, default_port=15010) == expected


@pytest.mark.parametrize("text", ["", ":80", "host:", "host:x", "host:70000", "a:b:c"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text)


def test_parse_label() -> None:
    assert parse_label("app=reviews") == ("app", "reviews")
    assert parse_label("a=b=c") == ("a", "b=c")
    assert parse_label("empty=") == ("empty", "")
    for bad in ("novalue", "=x"):
        with pytest.raises(ConfigError):
            parse_label(bad)


def test_parse_port_mapping() -> None:
    assert parse_port_mapping("9080=19080") == (9080, 19080)
    for bad in ("9080", "a=b", "0=1", "1=70000"):
        with pytest.raises(ConfigError):
            parse_port_mapping(bad)


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        AgentConfig(name="", namespace="ns")
    with pytest.raises(ConfigError):
        AgentConfig(name="a", namespace="ns", admin_port=0)
    with pytest.raises(ConfigError):
        AgentConfig(name="a", namespace="ns", ips=())
    with pytest.raises(ConfigError):
        AgentConfig(name="a", namespace="ns", concurrency=0)
    assert AgentConfig(name="a", namespace="ns", stats_port=0).stats_port == 0


def test_derived_values() -> None:
    config = AgentConfig(name="web", namespace="prod", ips=("10.0.0.5",))
    assert config.proxy_id == "web.prod"
    assert config.stats_bind == "10.0.0.5"
    assert AgentConfig(name="a", namespace="b", interception="REDIRECT").stats_bind == "0.0.0.0"
    assert config.resolved_work_dir == Path(tempfile.gettempdir()) / "pilotfish-agent-web.prod"
    assert default_work_dir("web", "prod") == config.resolved_work_dir
    assert AgentConfig(name="a", namespace="b", work_dir=Path("/x")).resolved_work_dir == Path("/x")


def test_find_envoy_honours_the_environment_variable(tmp_path: Path) -> None:
    fake = tmp_path / "my-envoy"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert find_envoy({ENVOY_ENV_VAR: str(fake)}) == str(fake)


def test_find_envoy_rejects_a_bad_environment_variable(tmp_path: Path) -> None:
    with pytest.raises(EnvoyNotFoundError, match=ENVOY_ENV_VAR):
        find_envoy({ENVOY_ENV_VAR: str(tmp_path / "missing")})


def test_find_envoy_finds_the_installed_envoy() -> None:
    path = find_envoy({"PATH": os.environ.get("PATH", "")})
    assert os.access(path, os.X_OK)
