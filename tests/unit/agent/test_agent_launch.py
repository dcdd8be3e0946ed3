"""``AgentLaunch.to_argv`` is what ``pilotfish agent`` parses back, field by field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pilotfish.agent.launch import AgentIdentity, AgentLaunch
from pilotfish.cli.agent import agent

PROGRAM = ["python", "-m", "pilotfish.cli.agent"]


def _parse(argv: list[str]) -> dict[str, object]:
    assert argv[: len(PROGRAM)] == PROGRAM
    ctx = agent.make_context("agent", argv[len(PROGRAM) :])
    return dict(ctx.params)


def _full(tmp_path: Path) -> AgentLaunch:
    token, root = tmp_path / "ca-token", tmp_path / "root-cert.pem"
    token.write_text("t")
    root.write_text("r")
    return AgentLaunch(
        role="gateway",
        name="istio-ingressgateway",
        namespace="istio-system",
        service_account="istio-ingressgateway-service-account",
        ip=("127.0.0.1", "fd00::1"),
        xds_address="127.0.0.1:15011",
        admin_port=15000,
        health_port=15021,
        interception="none",
        admin_address="127.0.0.2",
        health_bind="0.0.0.0",
        stats_port=0,
        envoy_gid=1337,
        concurrency=2,
        drain_duration=2.5,
        app_port=((8080, 31080), (9090, 31090)),
        label=(("app", "gw"), ("istio", "ingressgateway")),
        app_probe=("http:9080:/health",),
        work_dir=str(tmp_path / "proxy"),
        xds_protocol="sotw",
        identity=AgentIdentity(
            ca_address="10.0.0.1:15012",
            xds_secure_address="10.0.0.1:15011",
            ca_token_file=str(token),
            root_cert_file=str(root),
            trust_domain="example.org",
            cert_ttl="3600s",
        ),
    )


def test_every_field_is_an_agent_parameter_of_the_same_name() -> None:
    params = {p.name for p in agent.params}
    fields = {f.name for f in dataclasses.fields(AgentLaunch)} - {"identity", "extra_args"}
    fields |= {f.name for f in dataclasses.fields(AgentIdentity)}
    assert fields <= params, fields - params


def test_round_trip_through_the_agent_command(tmp_path: Path) -> None:
    launch = _full(tmp_path)
    parsed = _parse(launch.to_argv(PROGRAM))
    assert launch.identity is not None
    expected: dict[str, object] = {
        "role": "gateway",
        "name": launch.name,
        "namespace": launch.namespace,
        "service_account": launch.service_account,
        "ip": launch.ip,
        "xds_address": launch.xds_address,
        "admin_port": 15000,
        "health_port": 15021,
        "interception": "none",
        "admin_address": "127.0.0.2",
        "health_bind": "0.0.0.0",
        "stats_port": 0,
        "envoy_gid": 1337,
        "concurrency": 2,
        "drain_duration": 2.5,
        "app_port": ("8080=31080", "9090=31090"),
        "label": ("app=gw", "istio=ingressgateway"),
        "app_probe": ("http:9080:/health",),
        "work_dir": launch.work_dir,
        "xds_protocol": "sotw",
        **dataclasses.asdict(launch.identity),
    }
    assert {k: parsed[k] for k in expected} == expected


def test_unset_fields_leave_the_agents_defaults(tmp_path: Path) -> None:
    launch = AgentLaunch(
        name="web-0",
        namespace="default",
        xds_address="127.0.0.1:15010",
        admin_port=1,
        health_port=2,
        work_dir=str(tmp_path),
        extra_args=("--log-level", "debug"),
    )
    argv = launch.to_argv(PROGRAM)
    assert argv == [
        *PROGRAM,
        "--name", "web-0", "--namespace", "default",
        "--xds-address", "127.0.0.1:15010", "--admin-port", "1", "--health-port", "2",
        "--work-dir", str(tmp_path), "--log-level", "debug",
    ]  # fmt: skip
    parsed = _parse(argv)
    assert parsed["role"] == "sidecar" and parsed["service_account"] == "default"
    assert parsed["interception"] == "none" and parsed["stats_port"] == 15090
    assert parsed["xds_protocol"] == "delta"
    assert parsed["log_level"] == "debug"
    # A whole number of seconds is written as a person would type it.
    assert "2" in dataclasses.replace(launch, drain_duration=2.0).to_argv(PROGRAM)
