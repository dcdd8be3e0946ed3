"""``pilotfish analyze PATH...``: check configuration files without a control plane."""

from __future__ import annotations

import click

from pilotfish.api.analyze import analyze_paths, collect_files
from pilotfish.api.diagnostics import Severity
from pilotfish.cli.control_plane import mesh_config_option
from pilotfish.model.mesh_config import MeshConfig

__all__ = ["analyze"]


@click.command("analyze")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--domain-suffix",
    default="cluster.local",
    show_default=True,
    help="Cluster domain used to resolve short host names.",
)
@mesh_config_option
def analyze(paths: tuple[str, ...], domain_suffix: str, mesh_config: MeshConfig | None) -> None:
    """Load and check PATH... (files, or directories searched for *.yaml, *.yml, *.json).

    Prints one line per problem (file:line: Kind namespace/name: field: message)
    and a summary. Exits 1 when there is an error; warnings and info lines
    (kinds of other projects, which are ignored) alone exit 0.
    """
    diagnostics = analyze_paths(list(paths), domain_suffix=domain_suffix, mesh=mesh_config)
    for diagnostic in diagnostics:
        click.echo(diagnostic.format())
    errors = sum(1 for d in diagnostics if d.is_error)
    warnings = sum(1 for d in diagnostics if d.severity is Severity.WARNING)
    # Info lines (kinds of other projects, ignored) are counted apart: nothing is wrong.
    infos = len(diagnostics) - errors - warnings
    files, _ = collect_files(list(paths))
    noted = f", {_plural(infos, 'info message')}" if infos else ""
    click.echo(
        f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}{noted} "
        f"in {_plural(len(files), 'file')}"
    )
    if errors:
        raise SystemExit(1)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
