"""``pilotfish get KIND [NAME]``: read configuration from the control plane, kubectl-style."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import click
import yaml

from pilotfish.api.core.secret import redact_document
from pilotfish.api.kinds import TOP_LEVEL_SPEC_FIELDS
from pilotfish.cli.client import (
    ControlPlaneApi,
    call_api,
    connect,
    control_plane_option,
    token_file_option,
)
from pilotfish.cli.gateway_api_columns import GATEWAY_API_COLUMNS
from pilotfish.cli.resources import api_path, preferred_api_version, resolve_kind

__all__ = ["COLUMNS", "get", "table_rows"]

_Column = tuple[str, Callable[[Mapping[str, Any]], str]]


def _joined(*path: str) -> Callable[[Mapping[str, Any]], str]:
    """A column showing the list (or value) at ``spec.<path>``, comma-separated."""

    def cell(spec: Mapping[str, Any]) -> str:
        value: Any = spec
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None or value == []:
            return "<none>"
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return str(value)

    return cell


def _service_ports(spec: Mapping[str, Any]) -> str:
    ports = [p for p in spec.get("ports") or () if isinstance(p, Mapping)]
    if not ports:
        return "<none>"
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports)


def _entry_ports(spec: Mapping[str, Any]) -> str:
    ports = [p for p in spec.get("ports") or () if isinstance(p, Mapping)]
    if not ports:
        return "<none>"
    return ",".join(f"{p.get('number')}/{p.get('protocol', '')}".rstrip("/") for p in ports)


def _container_ports(spec: Mapping[str, Any]) -> str:
    ports = [p for p in spec.get("ports") or () if isinstance(p, Mapping)]
    if not ports:
        return "<none>"
    return ",".join(f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in ports)


def _replicas(spec: Mapping[str, Any]) -> str:
    return str(spec.get("replicas", 1))


def _template_images(spec: Mapping[str, Any]) -> str:
    """The container images of a workload's pod template (a Pod's own spec if no template)."""
    template = _mapping(spec.get("template"))
    pod = _mapping(template.get("spec")) if template else spec
    images = [
        str(c.get("image"))
        for c in pod.get("containers") or ()
        if isinstance(c, Mapping) and c.get("image")
    ]
    return ",".join(images) or "<none>"


def _gateway_servers(spec: Mapping[str, Any]) -> str:
    servers = [s for s in spec.get("servers") or () if isinstance(s, Mapping)]
    if not servers:
        return "<none>"
    shown = []
    for server in servers:
        port = _mapping(server.get("port"))
        hosts = ",".join(str(h) for h in server.get("hosts") or ())
        shown.append(f"{port.get('protocol', '?')}:{port.get('number', '?')} {hosts}".rstrip())
    return "; ".join(shown)


def _secret_type(doc: Mapping[str, Any]) -> str:
    return str(doc.get("type") or "Opaque")


def _secret_keys(doc: Mapping[str, Any]) -> str:
    """How many keys, as kubectl shows it (never the values)."""
    keys: set[str] = set()
    for name in ("data", "stringData"):
        keys.update(str(k) for k in _mapping(doc.get(name)))
    return str(len(keys))


#: Kind-specific table columns, computed from the spec as the user wrote it.
#: Kinds not listed show only their name.
COLUMNS: Final[MappingProxyType[str, tuple[_Column, ...]]] = MappingProxyType(
    {
        "VirtualService": (("HOSTS", _joined("hosts")), ("GATEWAYS", _joined("gateways"))),
        "DestinationRule": (("HOST", _joined("host")),),
        "Gateway": (("SERVERS", _gateway_servers),),
        "Service": (("PORTS", _service_ports),),
        "ServiceEntry": (("HOSTS", _joined("hosts")), ("PORTS", _entry_ports)),
        "WorkloadEntry": (("ADDRESS", _joined("address")),),
        "Sidecar": (("SELECTOR", _joined("workloadSelector", "labels")),),
        "Workload": (("REPLICAS", _replicas), ("PORTS", _container_ports)),
        "Secret": (("TYPE", _secret_type), ("DATA", _secret_keys)),
        "Deployment": (("REPLICAS", _replicas), ("IMAGES", _template_images)),
        "StatefulSet": (("REPLICAS", _replicas), ("IMAGES", _template_images)),
        "ReplicaSet": (("REPLICAS", _replicas), ("IMAGES", _template_images)),
        "DaemonSet": (("IMAGES", _template_images),),
        "Job": (("IMAGES", _template_images),),
        "Pod": (("IMAGES", _template_images),),
        **GATEWAY_API_COLUMNS,
    }
)


@click.command("get")
@click.argument("kind_word", metavar="KIND")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "yaml", "json"]),
    default="table",
    show_default=True,
)
@control_plane_option()
@token_file_option()
def get(
    kind_word: str,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: str,
    control_plane: str,
    token_file: str | None,
) -> None:
    """Show objects of KIND (plural, singular, Kind or short name such as vs, dr, svc).

    With NAME, one object (exit 1 if it does not exist); without, a list.
    ``-o yaml`` prints objects as they were written (several as a multi-document
    stream), ``-o json`` as the API returns them. ``get meshconfig`` shows the
    mesh config in force (as YAML unless ``-o json``).
    """
    api = connect(control_plane, token_file)
    if kind_word.lower() in _MESHCONFIG_WORDS:
        _show_meshconfig(api, output)
        return
    kind = resolve_kind(kind_word)
    if name and all_namespaces:
        raise click.UsageError("a NAME cannot be combined with --all-namespaces")
    version = preferred_api_version(kind)
    path = api_path(kind, version, None if all_namespaces else namespace, name)
    response = call_api(api, "GET", path)
    if not response.ok:
        click.echo(f"Error from server: {response.error_message()}", err=True)
        sys.exit(1)
    body = response.body if isinstance(response.body, dict) else {}
    # The server redacts Secrets; redacting again keeps values off the terminal
    # even when talking to a server that does not.
    if name:
        body = redact_document(body)
    elif isinstance(body.get("items"), list):
        body = {**body, "items": [_redacted(item) for item in body["items"]]}
    items: list[dict[str, Any]] = [body] if name else list(body.get("items") or [])
    if output == "json":
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    if output == "yaml":
        click.echo(
            yaml.safe_dump_all(items, sort_keys=False, allow_unicode=True, explicit_start=True),
            nl=False,
        )
        return
    if not items:
        where = "any namespace" if all_namespaces else f"{namespace} namespace"
        click.echo(f"No resources found in {where}.", err=True)
        return
    click.echo(_render_table(table_rows(kind, items, with_namespace=all_namespaces)))


_MESHCONFIG_WORDS: Final = frozenset({"meshconfig", "mesh-config"})


def _show_meshconfig(api: ControlPlaneApi, output: str) -> None:
    response = call_api(api, "GET", "/debug/meshconfig")
    if not response.ok:
        click.echo(f"Error from server: {response.error_message()}", err=True)
        sys.exit(1)
    if output == "json":
        click.echo(json.dumps(response.body, indent=2, ensure_ascii=False))
        return
    click.echo(yaml.safe_dump(response.body, sort_keys=False, allow_unicode=True), nl=False)


def table_rows(
    kind: str, items: Sequence[Mapping[str, Any]], *, with_namespace: bool
) -> list[list[str]]:
    """Header row, then one row per object: [NAMESPACE,] NAME, kind-specific columns."""
    columns = COLUMNS.get(kind, ())
    header = (["NAMESPACE"] if with_namespace else []) + ["NAME"] + [c[0] for c in columns]
    rows = [header]
    for item in items:
        meta = _mapping(item.get("metadata"))
        # Kinds without a spec (Secret) compute their columns from the whole object.
        # So do the Gateway API kinds, whose columns include status.
        whole = kind in TOP_LEVEL_SPEC_FIELDS or kind in GATEWAY_API_COLUMNS
        spec = item if whole else _mapping(item.get("spec"))
        row = [str(meta.get("namespace", ""))] if with_namespace else []
        row.append(str(meta.get("name", "")))
        row += [cell(spec) for _, cell in columns]
        rows.append(row)
    return rows


def _redacted(item: Any) -> Any:
    return redact_document(item) if isinstance(item, Mapping) else item


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _render_table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart (as kubectl prints)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
