"""The ``pilotfish`` command. Thin: each subcommand calls the library or the HTTP API.

Subcommands are imported on first use. Importing every one of them (the control
plane, the translator, the analyzer, the agent) costs over a second of CPU, and
commands such as ``status``, ``get`` or ``apply`` run in polls and scripts where
that start-up time is most of their run time.
"""

from __future__ import annotations

import importlib

import click

from pilotfish import __version__

__all__ = ["cli", "main"]

# Command name -> "module:attribute" of its click command, in help order.
COMMANDS: dict[str, str] = {
    "control-plane": "pilotfish.cli.control_plane:control_plane",
    "agent": "pilotfish.cli.agent:agent",
    "analyze": "pilotfish.cli.analyze:analyze",
    "proxy-status": "pilotfish.cli.proxy_status:proxy_status",
    "proxy-config": "pilotfish.cli.proxy_config:proxy_config",
    "explain": "pilotfish.cli.explain:explain",
    "up": "pilotfish.cli.up:up",
    "down": "pilotfish.cli.mesh_ops:down",
    "status": "pilotfish.cli.mesh_ops:status",
    "describe": "pilotfish.cli.mesh_ops:describe",
    "logs": "pilotfish.cli.mesh_ops:logs",
    "demo": "pilotfish.cli.demo:demo",
    "apply": "pilotfish.cli.apply:apply",
    "delete": "pilotfish.cli.apply:delete",
    "get": "pilotfish.cli.get:get",
    "dashboard": "pilotfish.cli.dashboard:dashboard",
    "dashboard-server": "pilotfish.cli.dashboard:dashboard_server",
    "trace-store": "pilotfish.cli.trace_store:trace_store",
    "stat": "pilotfish.cli.stat:stat",
    "top": "pilotfish.cli.stat:top",
    "join-token": "pilotfish.cli.join_token:join_token",
    "join": "pilotfish.cli.join:join",
}


def load_command(name: str) -> click.Command:
    """Import the module of command ``name`` and return its click command."""
    module, _, attribute = COMMANDS[name].partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):  # pragma: no cover - a wiring mistake
        raise TypeError(f"{COMMANDS[name]} is not a click command")
    return command


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when one is run or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            return load_command(cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pilotfish")
def cli() -> None:
    """Pilotfish: a light service mesh of real Envoy proxies driven by Istio-style config."""


def main() -> None:
    cli(prog_name="pilotfish")


if __name__ == "__main__":
    main()
