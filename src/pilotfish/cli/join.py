"""``pilotfish join``: make this host a mesh node for one WorkloadGroup's workload.

Runs the workload's sidecar agent (explicit mode: the app dials the sidecar as
an HTTP proxy at ``http://<address>:15001``) authenticated by a join token from
``pilotfish join-token create``; see ``runtime.join_host`` for how, and how it
stops. Exits with the agent's code: a spent or expired token ends it at once
with the CA's reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from pathlib import Path

import click

from pilotfish.cli.join_token import read_join_file
from pilotfish.runtime.join_host import JoinPlan, app_ports_of, parse_control_planes, run

__all__ = ["join"]


@click.command("join")
@click.option(
    "--control-plane",
    "control_plane",
    required=True,
    metavar="HOST[:PORT][,...]",
    help="Control planes to join: xDS over mTLS on PORT [default 15011], the CA on PORT+1. "
    "Several for failover.",
)
@click.option(
    "--token",
    "token_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Join file written by `pilotfish join-token create` (single use).",
)
@click.option("--address", required=True, help="This host's address, as other hosts reach it.")
@click.option(
    "--app-port",
    multiple=True,
    metavar="PORT[=APP_PORT]",
    help="A port of the workload (the WorkloadGroup's), served on --address by the sidecar "
    "and forwarded to the app on 127.0.0.1:APP_PORT [default: PORT] (repeatable).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=".pilotfish-join",
    show_default=True,
    help="Private directory for the agent (0700), removed when join stops.",
)
@click.option("--admin-port", type=int, default=15000, show_default=True)
@click.option("--health-port", type=int, default=15021, show_default=True)
@click.option(
    "--agent-arg",
    "agent_args",
    multiple=True,
    help="Extra flag passed to `pilotfish agent` as is (repeatable), e.g. --concurrency=1.",
)
def join(
    control_plane: str,
    token_file: str,
    address: str,
    app_port: tuple[str, ...],
    state_dir: str,
    admin_port: int,
    health_port: int,
    agent_args: tuple[str, ...],
) -> None:
    """Join the mesh: run this host's workload sidecar, registered with the control plane."""
    try:
        ipaddress.ip_address(address)
        plan = JoinPlan(
            grant=read_join_file(Path(token_file)),
            control_planes=parse_control_planes(control_plane),
            address=address,
            app_ports=app_ports_of(app_port),
            state_dir=Path(state_dir).absolute(),
            admin_port=admin_port,
            health_port=health_port,
            agent_args=agent_args,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    grant = plan.grant
    click.echo(
        f"joining as {plan.name}.{grant['namespace']} ({grant['serviceAccount']}) at {address}",
        err=True,
    )
    sys.exit(asyncio.run(run(plan)))
