"""The ``pilotfish`` command. Thin: each subcommand calls the library or the HTTP API."""

from __future__ import annotations

import click

from pilotfish import __version__
from pilotfish.cli.agent import agent
from pilotfish.cli.analyze import analyze
from pilotfish.cli.apply import apply, delete
from pilotfish.cli.control_plane import control_plane
from pilotfish.cli.dashboard import dashboard, dashboard_server
from pilotfish.cli.demo import demo
from pilotfish.cli.explain import explain
from pilotfish.cli.get import get
from pilotfish.cli.mesh_ops import describe, down, logs, status
from pilotfish.cli.proxy_config import proxy_config
from pilotfish.cli.proxy_status import proxy_status
from pilotfish.cli.stat import stat, top
from pilotfish.cli.trace_store import trace_store
from pilotfish.cli.up import up

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pilotfish")
def cli() -> None:
    """Pilotfish: a light service mesh of real Envoy proxies driven by Istio-style config."""


for command in (
    control_plane,
    agent,
    analyze,
    proxy_status,
    proxy_config,
    explain,
    up,
    down,
    status,
    describe,
    logs,
    demo,
    apply,
    delete,
    get,
    dashboard,
    dashboard_server,
    trace_store,
    stat,
    top,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="pilotfish")


if __name__ == "__main__":
    main()
