"""How to launch ``pilotfish agent``: one frozen value and its one command line.

Everything that starts an agent (the runtime's pods and gateways, the
benchmarks) describes it as an ``AgentLaunch`` and calls ``to_argv()``; no
other code spells agent flags. Field names are the parameter names of the
``pilotfish agent`` command (``cli/agent.py``), so ``--app-port`` is
``app_port`` and parsing ``to_argv()`` back gives the same values (a unit
test checks the round trip). A field left ``None`` (or empty) is not passed,
so the agent's own default applies. Flags come in one fixed order; the
runtime's sandbox (``runtime.sandbox``) and network namespace prefix wrap the
result unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["AgentIdentity", "AgentLaunch"]


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Flags that give a proxy its workload identity from the mesh CA."""

    ca_address: str
    xds_secure_address: str
    ca_token_file: str
    root_cert_file: str
    trust_domain: str
    cert_ttl: str  # a duration, e.g. "86400s"

    def to_argv(self) -> list[str]:
        return [
            "--ca-address",
            self.ca_address,
            "--xds-secure-address",
            self.xds_secure_address,
            "--ca-token-file",
            self.ca_token_file,
            "--root-cert-file",
            self.root_cert_file,
            "--trust-domain",
            self.trust_domain,
            "--cert-ttl",
            self.cert_ttl,
        ]


@dataclass(frozen=True, slots=True)
class AgentLaunch:
    """One ``pilotfish agent`` invocation (see the module docstring)."""

    name: str
    namespace: str
    xds_address: str
    admin_port: int
    health_port: int
    work_dir: str
    role: Literal["sidecar", "gateway", "node-proxy", "waypoint"] = "sidecar"
    service_account: str | None = None
    ip: tuple[str, ...] = ()
    interception: Literal["redirect", "none"] | None = None
    admin_address: str | None = None
    health_bind: str | None = None
    stats_port: int | None = None
    # Merged metrics port (15020), the app's metrics "PORT:PATH", the workload.
    status_port: int | None = None
    app_metrics: str | None = None
    workload: str | None = None
    envoy_gid: int | None = None
    concurrency: int | None = None
    drain_duration: float | None = None
    app_port: tuple[tuple[int, int], ...] = ()
    label: tuple[tuple[str, str], ...] = ()
    app_probe: tuple[str, ...] = ()
    identity: AgentIdentity | None = None
    xds_protocol: Literal["delta", "sotw"] | None = None
    node_name: str | None = None
    pod_tokens_dir: str | None = None
    workload_group: str | None = None
    # Appended as they are (tuning flags a caller passes through).
    extra_args: tuple[str, ...] = ()

    def to_argv(self, program: Sequence[str]) -> list[str]:
        """``program`` (e.g. ``[python, "-m", "pilotfish.cli.agent"]``) and the flags."""
        argv = list(program)
        if self.role != "sidecar":
            argv += ["--role", self.role]
        argv += ["--name", self.name, "--namespace", self.namespace]
        _opt(argv, "--service-account", self.service_account)
        for ip in self.ip:
            argv += ["--ip", ip]
        argv += [
            "--xds-address",
            self.xds_address,
            "--admin-port",
            str(self.admin_port),
            "--health-port",
            str(self.health_port),
        ]
        _opt(argv, "--interception", self.interception)
        _opt(argv, "--admin-address", self.admin_address)
        _opt(argv, "--health-bind", self.health_bind)
        _opt(argv, "--stats-port", self.stats_port)
        _opt(argv, "--status-port", self.status_port)
        _opt(argv, "--app-metrics", self.app_metrics)
        _opt(argv, "--workload", self.workload)
        _opt(argv, "--envoy-gid", self.envoy_gid)
        _opt(argv, "--concurrency", self.concurrency)
        _opt(argv, "--drain-duration", self.drain_duration)
        _opt(argv, "--xds-protocol", self.xds_protocol)
        _opt(argv, "--node-name", self.node_name)
        _opt(argv, "--pod-tokens-dir", self.pod_tokens_dir)
        _opt(argv, "--workload-group", self.workload_group)
        for target, app in self.app_port:
            argv += ["--app-port", f"{target}={app}"]
        for key, value in self.label:
            argv += ["--label", f"{key}={value}"]
        for probe in self.app_probe:
            argv += ["--app-probe", probe]
        argv += ["--work-dir", self.work_dir]
        if self.identity is not None:
            argv += self.identity.to_argv()
        argv += self.extra_args
        return argv


def _opt(argv: list[str], flag: str, value: str | float | None) -> None:
    if value is None:
        return
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # "2", as a person would type it, not "2.0"
    argv += [flag, str(value)]
