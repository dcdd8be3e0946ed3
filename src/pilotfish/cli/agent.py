"""``pilotfish agent``: run one Envoy proxy for a workload or a gateway.

Also runnable on its own as ``python -m pilotfish.cli.agent``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from pilotfish.agent.agent import Agent
from pilotfish.agent.ca_client import CaError
from pilotfish.agent.config import (
    AgentConfig,
    ConfigError,
    parse_addresses,
    parse_app_metrics,
    parse_app_probe,
    parse_duration,
    parse_label,
    parse_port_mapping,
)
from pilotfish.agent.identity import IdentityError
from pilotfish.control_plane_ports import CA_PORT, XDS_MTLS_PORT
from pilotfish.envoy_binary import EnvoyNotFoundError

__all__ = ["agent", "identity_defaults", "replica_identity_defaults"]

_ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warning", "warn", "error", "critical", "off")


def identity_defaults(
    xds_host: str,
    ca_address: str | None,
    ca_token_file: str | None,
    xds_tls: bool | None,
    xds_secure_address: str | None,
) -> tuple[str | None, bool, tuple[str, int]]:
    """Resolve the identity flags' defaults: (CA address, xDS over TLS, secure xDS address).

    A CA is configured when ``--ca-address`` or ``--ca-token-file`` is given; its
    address defaults to ``<xds host>:15012``. xDS over TLS defaults to on exactly
    when a CA is configured; its address defaults to ``<xds host>:15011``.
    The first of each, for one control plane; see ``replica_identity_defaults``.
    """
    cas, tls, secure = replica_identity_defaults(
        (xds_host,), ca_address, ca_token_file, xds_tls, xds_secure_address
    )
    return (cas[0] if cas else None), tls, secure[0]


def replica_identity_defaults(
    xds_hosts: tuple[str, ...],
    ca_address: str | None,
    ca_token_file: str | None,
    xds_tls: bool | None,
    xds_secure_address: str | None,
) -> tuple[tuple[str, ...], bool, tuple[tuple[str, int], ...]]:
    """``identity_defaults`` for several control-plane replicas.

    Each address flag takes a comma-separated list; a list left out defaults
    to one address per xDS host (duplicates dropped), in the same order.
    """
    hosts = tuple(dict.fromkeys(_url_host(host) for host in xds_hosts))
    secure = parse_addresses(
        xds_secure_address or ",".join(f"{host}:{XDS_MTLS_PORT}" for host in hosts),
        XDS_MTLS_PORT,
    )
    ca_enabled = ca_address is not None or ca_token_file is not None
    cas: tuple[str, ...] = ()
    if ca_address is not None:
        cas = tuple(f"{_url_host(h)}:{p}" for h, p in parse_addresses(ca_address))
    elif ca_enabled:
        cas = tuple(f"{host}:{CA_PORT}" for host in hosts)
    return cas, ca_enabled if xds_tls is None else xds_tls, secure


async def _run(config: AgentConfig) -> int:
    proxy = Agent(config)
    await proxy.start()
    return await proxy.run_until_stopped()


@click.command("agent")
@click.option(
    "--role",
    type=click.Choice(["sidecar", "gateway", "node-proxy", "waypoint"]),
    default="sidecar",
    show_default=True,
    help="Kind of proxy.",
)
@click.option(
    "--node-name", default="", help="Node proxies: the host whose ambient pods it serves."
)
@click.option(
    "--pod-tokens-dir",
    default=None,
    help="Node proxies: directory of the CA tokens of the host's ambient pods.",
)
@click.option(
    "--workload-group",
    default="",
    help="WorkloadGroup the workload joins the mesh for (registered while connected).",
)
@click.option("--name", required=True, help="Workload (or gateway) name.")
@click.option("--namespace", required=True, help="Namespace of the workload.")
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Workload label (repeatable).")
@click.option(
    "--service-account", default="default", show_default=True, help="Identity of the workload."
)
@click.option(
    "--locality",
    default="",
    metavar="REGION/ZONE/SUBZONE",
    help="Where the workload runs (locality load balancing).",
)
@click.option(
    "--ip",
    multiple=True,
    default=("127.0.0.1",),
    show_default=True,
    metavar="ADDR",
    help="Instance IP of the workload (repeatable; the first is the primary).",
)
@click.option(
    "--xds-address",
    default="127.0.0.1:15010",
    show_default=True,
    metavar="HOST:PORT[,HOST:PORT...]",
    help="Control plane's xDS (ADS) address; several replicas comma-separated (Envoy "
    "fails over between them).",
)
@click.option(
    "--admin-port",
    type=int,
    default=15000,
    show_default=True,
    help="Envoy admin port (bound on 127.0.0.1 only).",
)
@click.option(
    "--health-port",
    type=int,
    default=15021,
    show_default=True,
    help="Port of the /healthz/ready endpoint.",
)
@click.option(
    "--health-bind",
    default="127.0.0.1",
    show_default=True,
    help="Address of the /healthz/ready endpoint.",
)
@click.option(
    "--interception",
    type=click.Choice(["redirect", "none"], case_sensitive=False),
    default="none",
    show_default=True,
    help="redirect: iptables captures traffic; none: apps dial the proxy.",
)
@click.option(
    "--app-address",
    default="127.0.0.1",
    show_default=True,
    help="Address where the local app listens.",
)
@click.option(
    "--app-port",
    multiple=True,
    metavar="TARGET=APP",
    help="Service target port served by the app on another port (repeatable).",
)
@click.option(
    "--app-probe",
    multiple=True,
    metavar="http:PORT:PATH|tcp:PORT",
    help="Readiness check of the app served on /app-health/PORT/ready (repeatable).",
)
@click.option(
    "--outbound-port", type=int, default=15001, show_default=True, help="Outbound capture port."
)
@click.option(
    "--inbound-port", type=int, default=15006, show_default=True, help="Inbound capture port."
)
@click.option(
    "--stats-port",
    type=int,
    default=15090,
    show_default=True,
    help="Prometheus stats port (0 disables).",
)
@click.option(
    "--status-port",
    type=int,
    default=0,
    show_default=True,
    help="Merged Prometheus metrics (proxy, agent, app) on this port (0: off).",
)
@click.option(
    "--app-metrics",
    metavar="PORT:PATH",
    default=None,
    help="Merge the app's metrics from this port and path (prometheus.io annotations).",
)
@click.option("--workload", default="", help="Workload the proxy belongs to [default: --name].")
@click.option(
    "--cluster-id", default="Kubernetes", show_default=True, help="Cluster label of metrics."
)
@click.option("--concurrency", type=int, default=2, show_default=True, help="Envoy worker threads.")
@click.option(
    "--drain-duration",
    type=float,
    default=5.0,
    show_default=True,
    help="Longest wait (seconds) for connections to finish on shutdown.",
)
@click.option(
    "--log-level",
    type=click.Choice(_ENVOY_LOG_LEVELS),
    default="info",
    show_default=True,
    help="Envoy log level.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the bootstrap and envoy.log go [default: $TMPDIR/pilotfish-agent-"
    "<name>.<namespace>].",
)
@click.option(
    "--admin-address",
    default="127.0.0.1",
    show_default=True,
    help="Loopback address of Envoy's admin API.",
)
@click.option(
    "--envoy-uid", type=int, default=None, help="Run Envoy as this user id (default: the agent's)."
)
@click.option(
    "--envoy-gid",
    type=int,
    default=None,
    help="Run Envoy with this group id; transparent capture exempts the proxy's traffic by it.",
)
@click.option(
    "--ca-address",
    default=None,
    metavar="HOST:PORT[,HOST:PORT...]",
    help="Mesh CA (the control plane's CA port; several replicas comma-separated) "
    "[default: <xds host>:15012 per xDS host when --ca-token-file is given].",
)
@click.option(
    "--ca-token-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="File holding this pod's CA token; enables workload certificates over SDS.",
)
@click.option(
    "--root-cert-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Mesh root certificate (PEM) that the CA's and control plane's certificates chain to.",
)
@click.option(
    "--trust-domain",
    default="cluster.local",
    show_default=True,
    help="SPIFFE trust domain of the workload's identity.",
)
@click.option(
    "--cert-ttl",
    default=None,
    metavar="DURATION",
    help="Requested certificate lifetime, e.g. 3600, 20s, 30m, 24h [default: the CA's].",
)
@click.option(
    "--xds-tls/--no-xds-tls",
    default=None,
    help="Use the control plane's xDS-over-mTLS port [default: on with a CA].",
)
@click.option(
    "--xds-secure-address",
    default=None,
    metavar="HOST:PORT[,HOST:PORT...]",
    help="Control plane's xDS-over-mTLS address (several comma-separated) "
    "[default: <xds host>:15011 per xDS host].",
)
@click.option(
    "--xds-protocol",
    type=click.Choice(["delta", "sotw"]),
    default="delta",
    show_default=True,
    help="ADS variant: incremental (delta) or State of the World (sotw).",
)
@click.option(
    "--envoy-output/--no-envoy-output",
    default=False,
    show_default=True,
    help="Also copy Envoy's log to this process's stderr.",
)
def agent(**options: Any) -> None:
    """Run an Envoy proxy configured by the control plane over xDS."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = _config(options)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        code = asyncio.run(_run(config))
    except (EnvoyNotFoundError, CaError, IdentityError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot start the agent: {exc}") from exc
    sys.exit(code)


# Options that become AgentConfig fields of the same name, unchanged.
_AS_GIVEN = (
    "name",
    "namespace",
    "service_account",
    "admin_port",
    "admin_address",
    "envoy_uid",
    "envoy_gid",
    "health_port",
    "health_bind",
    "app_address",
    "outbound_port",
    "inbound_port",
    "stats_port",
    "status_port",
    "workload",
    "cluster_id",
    "concurrency",
    "drain_duration",
    "log_level",
    "trust_domain",
    "workload_group",
)


def _config(o: dict[str, Any]) -> AgentConfig:
    """The agent's configuration from its command-line options (ConfigError if bad)."""
    (xds_host, xds_port), *xds_more = parse_addresses(o["xds_address"], default_port=15010)
    cas, xds_tls, ((secure_host, secure_port), *secure_more) = replica_identity_defaults(
        (xds_host, *(host for host, _ in xds_more)),
        o["ca_address"],
        o["ca_token_file"],
        o["xds_tls"],
        o["xds_secure_address"],
    )
    paths: dict[str, Any] = {
        key: Path(o[key]) if o[key] else None
        for key in ("work_dir", "ca_token_file", "root_cert_file")
    }
    return AgentConfig(
        **{key: o[key] for key in _AS_GIVEN},
        **paths,
        role=o["role"] if o["role"] in ("gateway", "node-proxy", "waypoint") else "sidecar",
        node_name=o["node_name"],
        pod_tokens_dir=Path(o["pod_tokens_dir"]) if o["pod_tokens_dir"] else None,
        labels=tuple(sorted(dict(parse_label(t) for t in o["label"]).items())),
        locality=o["locality"].strip("/"),
        ips=o["ip"],
        xds_host=xds_host,
        xds_port=xds_port,
        interception="REDIRECT" if o["interception"].lower() == "redirect" else "NONE",
        app_ports=tuple(sorted(dict(parse_port_mapping(t) for t in o["app_port"]).items())),
        app_probes=tuple(parse_app_probe(t) for t in o["app_probe"]),
        app_metrics=parse_app_metrics(o["app_metrics"]) if o["app_metrics"] else None,
        inherit_envoy_output=o["envoy_output"],
        ca_address=cas[0] if cas else None,
        ca_alternates=tuple(cas[1:]),
        xds_alternates=tuple(xds_more),
        xds_secure_alternates=tuple(secure_more),
        cert_ttl=int(parse_duration(o["cert_ttl"])) if o["cert_ttl"] else None,
        xds_tls=xds_tls,
        xds_secure_host=secure_host,
        xds_secure_port=secure_port,
        xds_protocol="sotw" if o["xds_protocol"] == "sotw" else "delta",
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    agent()
