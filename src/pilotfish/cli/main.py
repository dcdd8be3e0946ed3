"""The ``pilotfish`` command. Thin: each subcommand calls the library or the HTTP API."""

from __future__ import annotations

import click

from pilotfish import __version__
from pilotfish.cli.agent import agent
from pilotfish.cli.analyze import analyze
from pilotfish.cli.control_plane import control_plane
from pilotfish.cli.proxy_config import proxy_config
from pilotfish.cli.proxy_status import proxy_status

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pilotfish")
def cli() -> None:
    """Pilotfish: a light service mesh of real Envoy proxies driven by Istio-style config."""


@cli.command("demo")
def demo() -> None:
    """Run the demo mesh (not yet: it comes with the local mesh runtime)."""
    click.echo(
        "pilotfish demo: not yet. The local mesh runtime (`pilotfish up`) is still to come.\n"
        "Today you can run `pilotfish control-plane --config DIR` and `pilotfish agent ...`;\n"
        "see README.md."
    )


for command in (control_plane, agent, analyze, proxy_status, proxy_config):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="pilotfish")


if __name__ == "__main__":
    main()
