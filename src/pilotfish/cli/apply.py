"""``pilotfish apply -f`` and ``pilotfish delete``: change configuration through the API.

Files are loaded and validated locally first, with the same loader as
``analyze``, so a mistake is reported with its file and line and nothing is
sent while any file has an error. ``apply`` then sends every object in one
request to the config API's batch endpoint (``controlplane.apply_api``),
which validates again, runs the analyzers over the configuration as it would
be, and writes all objects or none. Findings come back per object (its index
in the request) with a field path; they are printed as ``istioctl analyze -o
log`` prints them, at the line of that field in the local file. Each object
is reported as ``created``, ``configured`` or ``unchanged``. ``delete`` sends
one ``DELETE`` per object, like kubectl.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from pilotfish.api.analysis.output import format_findings
from pilotfish.api.analyze import collect_files
from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.loader import load_file
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.cli.client import (
    ApiResponse,
    call_api,
    connect,
    control_plane_option,
    token_file_option,
)
from pilotfish.cli.resources import api_path, label, preferred_api_version, resolve_kind

__all__ = ["apply", "delete", "load_for_change"]

#: The config API's batch write (``controlplane.apply_api.APPLY_PATH``).
_APPLY_PATH = "/apis/pilotfish.io/v1/apply"

_FILE_OPTION = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    type=click.Path(),
    help="File or directory (searched recursively for *.yaml, *.yml, *.json). Repeatable.",
)


@click.command("apply")
@_FILE_OPTION
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check everything the server checks (schema, analyzers) and report; write nothing.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write even if the analyzers find Error-level problems (they are still printed). "
    "Schema errors are never written.",
)
@control_plane_option()
@token_file_option()
def apply(
    paths: tuple[str, ...],
    dry_run: bool,
    force: bool,
    control_plane: str,
    token_file: str | None,
) -> None:
    """Create or update the objects in -f FILE|DIR on the control plane, as one change.

    The server analyzes the configuration as it would be after the write (the
    stored objects with these in place), with the analyzers and Istio levels
    of ``pilotfish analyze``. Error-level findings about these objects refuse
    the whole write unless --force; warnings are printed and the objects
    written. Prints one line per object (``virtualservices.networking.istio.io/
    reviews created|configured|unchanged``). Exits 1 if any file has an error
    (then nothing is sent) or the write was refused (then nothing was written).
    """
    if not paths:
        raise click.UsageError("give at least one -f FILE|DIR")
    resources = load_for_change(paths)
    if not resources:
        return
    api = connect(control_plane, token_file)
    params = {"dryRun": "All"} if dry_run else {}
    if force:
        params["force"] = "true"
    body = {"items": [_item(r) for r in resources]}
    response = call_api(api, "POST", _APPLY_PATH, body, params=params)
    answer = response.body if isinstance(response.body, dict) else {}
    if response.status in (400, 409) and answer.get("errors"):
        _print_item_errors(resources, answer)
        click.echo("the server refused the objects; nothing was written", err=True)
        sys.exit(1)
    if response.status not in (200, 422):
        click.echo(f"error: {response.error_message()}", err=True)
        for problem in answer.get("errors") or ():
            if isinstance(problem, dict):
                click.echo(f"  {problem.get('message', '')}", err=True)
        sys.exit(1)
    findings = _findings(resources, answer.get("findings"))
    if findings:
        click.echo(format_findings(findings, "log"), err=True)
    errors = sum(1 for d in findings if d.is_error)
    if response.status == 422:
        click.echo(
            f"apply refused: {_plural(errors, 'Error-level finding')} in the applied objects; "
            "nothing was written (--force writes anyway)",
            err=True,
        )
        sys.exit(1)
    suffix = " (server dry run)" if dry_run else ""
    for result in answer.get("results") or ():
        if isinstance(result, dict):
            kind, version = str(result.get("kind", "")), str(result.get("apiVersion", ""))
            name = label(kind, version, str(result.get("name", "")))
            click.echo(f"{name} {result.get('change', 'configured')}{suffix}")
    if errors:
        done = "would be written" if dry_run else "written"
        click.echo(f"{done} despite {_plural(errors, 'Error-level finding')} (--force)", err=True)


@click.command("delete")
@_FILE_OPTION
@click.argument("kind_and_names", nargs=-1, metavar="[KIND NAME...]")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--ignore-not-found", is_flag=True, help="Objects already gone are not an error.")
@control_plane_option()
@token_file_option()
def delete(
    paths: tuple[str, ...],
    kind_and_names: tuple[str, ...],
    namespace: str,
    ignore_not_found: bool,
    control_plane: str,
    token_file: str | None,
) -> None:
    """Delete the objects named in -f FILE|DIR, or KIND NAME... in -n NAMESPACE.

    Prints ``<resource>/<name> deleted`` or ``... not found`` per object; exits 1
    if any was not found (unless --ignore-not-found) or could not be deleted.
    """
    targets: list[tuple[str, str, str, str, Resource | None]] = []
    if paths and kind_and_names:
        raise click.UsageError("give either -f FILE|DIR or KIND NAME..., not both")
    if paths:
        for r in load_for_change(paths):
            targets.append((r.kind, r.api_version, r.namespace, r.name, r))
    elif len(kind_and_names) >= 2:
        kind = resolve_kind(kind_and_names[0])
        version = preferred_api_version(kind)
        targets += [(kind, version, namespace, name, None) for name in kind_and_names[1:]]
    else:
        raise click.UsageError("give -f FILE|DIR, or KIND and at least one NAME")
    api = connect(control_plane, token_file)
    failed = False
    for kind, version, ns, name, resource in targets:
        response = call_api(api, "DELETE", api_path(kind, version, ns, name))
        shown = label(kind, version, name)
        if response.ok:
            click.echo(f"{shown} deleted")
        elif response.status == 404 and _is_missing_object(response):
            click.echo(f"{shown} not found")
            failed |= not ignore_not_found
        else:
            failed = True
            if resource is not None:
                _print_errors(resource, response)
            else:
                click.echo(f"error: {kind} {ns}/{name}: {response.error_message()}", err=True)
    if failed:
        sys.exit(1)


def load_for_change(paths: Sequence[str]) -> list[Resource]:
    """Every object of the files under ``paths``, in file order.

    Prints every diagnostic and exits 1 if any file (or path) has an error or
    two files define the same object: nothing may be sent then.
    """
    files, problems = collect_files(list(paths))
    resources: list[Resource] = []
    diagnostics: list[Diagnostic] = list(problems)
    seen: dict[ResourceKey, Resource] = {}
    for file in files:
        loaded = load_file(file)
        diagnostics += loaded.diagnostics
        for resource in loaded.resources:
            earlier = seen.get(resource.key)
            if earlier is not None:
                diagnostics.append(_duplicate(resource, earlier))
                continue
            seen[resource.key] = resource
            resources.append(resource)
    if any(d.is_error for d in diagnostics):
        for diagnostic in diagnostics:
            click.echo(diagnostic.format(), err=True)
        errors = sum(1 for d in diagnostics if d.is_error)
        click.echo(f"{errors} error(s); nothing was sent", err=True)
        sys.exit(1)
    for diagnostic in diagnostics:
        if diagnostic.severity is Severity.INFO:  # ignored kinds: the server never sees them
            click.echo(diagnostic.format(), err=True)
    if not resources:
        click.echo("no objects found", err=True)
    return resources


def _body(resource: Resource) -> dict[str, Any]:
    """The document as the user wrote it, namespace filled in (plain JSON data)."""
    doc: dict[str, Any] = _plain(resource.raw)
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        meta["namespace"] = resource.namespace
    return doc


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _is_missing_object(response: ApiResponse) -> bool:
    """A 404 about the object, not about the resource type or path."""
    return response.error_message().endswith(" not found")


def _print_errors(resource: Resource, response: ApiResponse) -> None:
    """The server's errors as ``file:line: Kind ns/name: field: message`` of the local file."""
    body = response.body if isinstance(response.body, dict) else {}
    errors = [e for e in body.get("errors") or () if isinstance(e, dict)]
    if not errors:
        click.echo(_local(resource, "", response.error_message()).format(), err=True)
        return
    for error in errors:
        field = str(error.get("field") or "")
        click.echo(_local(resource, field, str(error.get("message", ""))).format(), err=True)


def _local(
    resource: Resource,
    field: str,
    message: str,
    severity: Severity = Severity.ERROR,
    code: str = "",
) -> Diagnostic:
    """A diagnostic about ``field`` of ``resource``, at its line in the local file."""
    file = resource.source.file if resource.source else "<unknown>"
    return Diagnostic(
        severity,
        message,
        SourceRef(file, resource.line_of(field)),
        resource.kind,
        resource.namespace,
        resource.name,
        field,
        code,
    )


def _item(resource: Resource) -> dict[str, Any]:
    """One object of the batch request, with where it is written."""
    source = resource.source
    return {
        "object": _body(resource),
        "file": source.file if source else "",
        "line": source.line if source else 0,
    }


def _of_item(resources: Sequence[Resource], entry: Mapping[str, Any]) -> Resource | None:
    index = entry.get("item")
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(resources):
        return resources[index]
    return None


def _findings(resources: Sequence[Resource], entries: Any) -> list[Diagnostic]:
    """The server's findings, each at the line of its field in the local file."""
    found: list[Diagnostic] = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        severity = _SEVERITIES.get(str(entry.get("severity")), Severity.WARNING)
        field, message = str(entry.get("field") or ""), str(entry.get("message", ""))
        code = str(entry.get("code") or "")
        resource = _of_item(resources, entry)
        if resource is not None:
            found.append(_local(resource, field, message, severity, code))
            continue
        file, line = entry.get("file"), entry.get("line")
        found.append(
            Diagnostic(
                severity,
                message,
                SourceRef(str(file), line if isinstance(line, int) else 0) if file else None,
                str(entry.get("kind") or ""),
                str(entry.get("namespace") or ""),
                str(entry.get("name") or ""),
                field,
                code,
            )
        )
    return found


def _print_item_errors(resources: Sequence[Resource], answer: Mapping[str, Any]) -> None:
    """The server's schema errors as ``file:line: Kind ns/name: field: message``."""
    for entry in (*(answer.get("errors") or ()), *(answer.get("warnings") or ())):
        if not isinstance(entry, dict):
            continue
        field, message = str(entry.get("field") or ""), str(entry.get("message", ""))
        severity = _SEVERITIES.get(str(entry.get("severity")), Severity.ERROR)
        resource = _of_item(resources, entry)
        if resource is not None:
            click.echo(_local(resource, field, message, severity).format(), err=True)
        else:
            click.echo(f"error: {message}", err=True)


_SEVERITIES = {s.value: s for s in Severity}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _duplicate(resource: Resource, earlier: Resource) -> Diagnostic:
    where = str(earlier.source) if earlier.source else "elsewhere"
    return Diagnostic(
        Severity.ERROR,
        f"defined more than once (first at {where})",
        resource.source,
        resource.kind,
        resource.namespace,
        resource.name,
        "metadata.name",
    )
