"""``pilotfish join``'s plan: addresses, ports and the agent command line it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.cli.agent import _config, agent
from pilotfish.runtime.join_host import (
    ControlPlaneAddress,
    JoinPlan,
    app_ports_of,
    parse_control_planes,
)

GRANT = {
    "token": "pfjoin-secret",
    "namespace": "default",
    "serviceAccount": "bookinfo-ratings",
    "workloadGroup": "ratings-vm",
    "expiresAt": 0,
    "rootCert": "-----BEGIN CERTIFICATE-----\n",
    "trustDomain": "example.org",
    "labels": {"app": "ratings", "version": "v4"},
}


def test_control_plane_addresses() -> None:
    assert parse_control_planes("10.0.0.1, 10.0.0.2:15111") == (
        ControlPlaneAddress("10.0.0.1", 15011),
        ControlPlaneAddress("10.0.0.2", 15111),
    )
    assert parse_control_planes("10.0.0.2:15111")[0].ca_port == 15112
    for bad in ("", "h:x", "h:0", "h:65535"):
        with pytest.raises(ValueError):
            parse_control_planes(bad)


def test_app_ports() -> None:
    assert app_ports_of(["9080", "9443=19443"]) == ((9080, 9080), (9443, 19443))
    with pytest.raises(ValueError):
        app_ports_of(["http"])


def test_the_agent_runs_explicit_with_the_group_identity_and_every_control_plane(
    tmp_path: Path,
) -> None:
    plan = JoinPlan(
        grant=GRANT,
        control_planes=parse_control_planes("10.0.0.1,10.0.0.2:15111"),
        address="10.77.0.5",
        app_ports=((9080, 19080),),
        state_dir=tmp_path / "state",
    )
    plan.prepare()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert plan.token_file.read_text() == "pfjoin-secret\n"
    assert plan.token_file.stat().st_mode & 0o777 == 0o600
    argv = plan.launch().to_argv(["python", "-m", "pilotfish.cli.agent"])
    assert "pfjoin-secret" not in " ".join(argv)
    config = _config(dict(agent.make_context("agent", argv[3:]).params))
    assert (config.name, config.namespace, config.service_account) == (
        "ratings-vm-10-77-0-5",
        "default",
        "bookinfo-ratings",
    )
    assert config.workload_group == "ratings-vm" and config.interception == "NONE"
    assert config.ips == ("10.77.0.5",) and config.app_ports == ((9080, 19080),)
    assert dict(config.labels) == {"app": "ratings", "version": "v4"}
    assert config.xds_tls and config.trust_domain == "example.org"
    assert (config.xds_secure_host, config.xds_secure_port) == ("10.0.0.1", 15011)
    assert config.xds_secure_alternates == (("10.0.0.2", 15111),)
    assert (config.ca_address, config.ca_alternates) == ("10.0.0.1:15012", ("10.0.0.2:15112",))
    plan.clean()
    assert not (tmp_path / "state").exists()
