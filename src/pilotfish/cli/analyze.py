"""``pilotfish analyze [PATH...]``: check configuration, as ``istioctl analyze`` does.

Files and directories are analyzed together (references across files are
resolved); with no PATH, the live mesh's configuration is read from the
control plane's config API. Findings that Istio's analyzers also report carry
Istio's code and level (``api.analysis.messages``), so ``--suppress``,
``--failure-threshold`` and ``--output-threshold`` mean what they mean for
istioctl. Exit codes: 1 when the configuration itself is invalid (an error
without an Istio code: a file that does not load, an unknown field, a
duplicate object: it would be refused), else 79 (istioctl's) when a finding is
at or above ``--failure-threshold``, else 0.
"""

from __future__ import annotations

import click

from pilotfish.api.analysis import messages
from pilotfish.api.analysis.output import (
    LEVELS,
    Suppression,
    at_least,
    format_findings,
    parse_level,
    parse_suppression,
    suppressed,
    with_catalogue_levels,
)
from pilotfish.api.analysis.scope import in_scope, unscoped
from pilotfish.api.analyze import analyze_loaded, collect_files
from pilotfish.api.diagnostics import Diagnostic, Severity
from pilotfish.api.loader import load_file
from pilotfish.cli.analyze_live import live_resources
from pilotfish.cli.client import connect, control_plane_option, token_file_option
from pilotfish.cli.control_plane import mesh_config_option
from pilotfish.model.mesh_config import MeshConfig

__all__ = ["FAILURE_EXIT_CODE", "analyze"]

#: istioctl's exit code for findings at or above the failure threshold.
FAILURE_EXIT_CODE = 79


def _level(ctx: click.Context, param: click.Parameter, value: str) -> Severity:
    try:
        return parse_level(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _suppressions(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[Suppression]:
    found: list[Suppression] = []
    for value in values:
        try:
            suppression = parse_suppression(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if messages.by_code(suppression.code) is None:
            click.echo(
                f"Warning: {suppression.code} is not one of Istio's message codes: "
                "the suppression has no effect",
                err=True,
            )
        found.append(suppression)
    return found


@click.command("analyze")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--domain-suffix",
    default="cluster.local",
    show_default=True,
    help="Cluster domain used to resolve short host names.",
)
@mesh_config_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "log", "json", "yaml"]),
    default="text",
    show_default=True,
    help="text: file:line: Kind ns/name: field: message, and a summary; log: istioctl's "
    "lines (Error [IST0101] (Kind ns/name file:line) message); json, yaml: istioctl's list "
    "of {code, level, origin, reference, documentationUrl, message} (plus field).",
)
@click.option(
    "--failure-threshold",
    default="Error",
    show_default=True,
    callback=_level,
    help=f"Lowest level ({', '.join(LEVELS)}) of a finding that makes the exit code 79.",
)
@click.option(
    "--output-threshold",
    default="Info",
    show_default=True,
    callback=_level,
    help=f"Lowest level ({', '.join(LEVELS)}) of a finding that is printed.",
)
@click.option(
    "-S",
    "--suppress",
    "suppressions",
    multiple=True,
    callback=_suppressions,
    help="Do not report CODE on RESOURCE: 'IST0102=Namespace default', "
    "'IST0101=VirtualService default/reviews' (or reviews.default); '*' matches anything "
    "('IST0101=VirtualService *'). Repeatable.",
)
@click.option(
    "-n",
    "--namespace",
    default=None,
    help="Report only findings on objects of this namespace (everything is still analyzed "
    "together). Without PATH the default is 'default', as for istioctl.",
)
@click.option(
    "-A",
    "--all-namespaces",
    is_flag=True,
    help="Report findings in every namespace (the default with PATHs).",
)
@control_plane_option()
@token_file_option()
def analyze(
    paths: tuple[str, ...],
    domain_suffix: str,
    mesh_config: MeshConfig | None,
    output: str,
    failure_threshold: Severity,
    output_threshold: Severity,
    suppressions: list[Suppression],
    namespace: str | None,
    all_namespaces: bool,
    control_plane: str,
    token_file: str | None,
) -> None:
    """Analyze PATH... (files, or directories searched for *.yaml, *.yml, *.json)
    together, or, with no PATH, the configuration of the running control plane.

    Objects in Kubernetes system namespaces (kube-system, kube-public,
    kube-node-lease, local-path-storage) are not analyzed, as in Istio.
    """
    if all_namespaces and namespace:
        raise click.UsageError("give either -n NAMESPACE or -A, not both")
    if paths:
        files, invalid = collect_files(list(paths))
        results = [load_file(f) for f in files]
        invalid += [d for result in results for d in result.diagnostics]
        loaded = [r for result in results for r in result.resources]
        target = _plural(len(files), "file")
        scope = None if all_namespaces else namespace
    else:
        loaded, invalid = live_resources(connect(control_plane, token_file))
        target = f"the control plane's configuration ({_plural(len(loaded), 'object')})"
        scope = None if all_namespaces else (namespace or "default")
    found = unscoped(invalid) + analyze_loaded(loaded, domain_suffix, mesh_config)
    found = with_catalogue_levels(found)
    found = [d for d in found if in_scope(d, scope) and not suppressed(d, suppressions)]
    shown = [d for d in found if at_least(d, output_threshold)]
    _print(shown, output, target)
    if any(d.is_error and not d.code for d in found):
        raise SystemExit(1)
    if any(at_least(d, failure_threshold) for d in found):
        raise SystemExit(FAILURE_EXIT_CODE)


def _print(shown: list[Diagnostic], output: str, target: str) -> None:
    if output == "text":
        for diagnostic in shown:
            click.echo(diagnostic.format())
        errors = sum(1 for d in shown if d.is_error)
        warnings = sum(1 for d in shown if d.severity is Severity.WARNING)
        # Info lines (kinds of other projects, ignored) are counted apart: nothing is wrong.
        infos = len(shown) - errors - warnings
        noted = f", {_plural(infos, 'info message')}" if infos else ""
        click.echo(f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}{noted} in {target}")
        return
    text = format_findings(shown, output)
    if text:
        click.echo(text)
    if not shown:
        click.echo(f"\u2714 No validation issues found when analyzing {target}.", err=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
