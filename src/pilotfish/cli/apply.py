"""``pilotfish apply -f`` and ``pilotfish delete``: change configuration through the API.

Files are loaded and validated locally first, with the same loader as
``analyze``, so a mistake is reported with its file and line and nothing is
sent while any file has an error. Each object is then written with its own
request (``PUT``), like kubectl, and reported as ``created``, ``configured``
or ``unchanged``. The server validates again; its errors, which name fields,
are mapped back to lines of the local file.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

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

#: Response header naming what a write did (``controlplane.config_api.CHANGE_HEADER``).
_CHANGE_HEADER = "x-pilotfish-change"

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
@control_plane_option()
@token_file_option()
def apply(paths: tuple[str, ...], control_plane: str, token_file: str | None) -> None:
    """Create or update the objects in -f FILE|DIR on the control plane.

    Prints one line per object (``virtualservices.networking.istio.io/reviews
    created|configured|unchanged``). Exits 1 if any file has an error (then
    nothing is sent) or any object was refused.
    """
    if not paths:
        raise click.UsageError("give at least one -f FILE|DIR")
    resources = load_for_change(paths)
    api = connect(control_plane, token_file)
    failed = False
    for resource in resources:
        response = call_api(
            api,
            "PUT",
            api_path(resource.kind, resource.api_version, resource.namespace, resource.name),
            _body(resource),
        )
        _print_warnings(response)
        name = label(resource.kind, resource.api_version, resource.name)
        if response.status == 201:
            click.echo(f"{name} created")
        elif response.ok:
            click.echo(f"{name} {response.headers.get(_CHANGE_HEADER, 'configured')}")
        else:
            failed = True
            _print_errors(resource, response)
    if failed:
        sys.exit(1)


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


def _print_warnings(response: ApiResponse) -> None:
    for text in response.warnings:
        click.echo(f"Warning: {text}", err=True)


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


def _local(resource: Resource, field: str, message: str) -> Diagnostic:
    """A diagnostic about ``field`` of ``resource``, at its line in the local file."""
    file = resource.source.file if resource.source else "<unknown>"
    return Diagnostic(
        Severity.ERROR,
        message,
        SourceRef(file, resource.line_of(field)),
        resource.kind,
        resource.namespace,
        resource.name,
        field,
    )


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
