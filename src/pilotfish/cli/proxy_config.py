"""``pilotfish proxy-config``: what the control plane sent to one proxy."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import click
import yaml
from cryptography import x509
from rich.console import Console
from rich.table import Table

from pilotfish.cli.client import connect, control_plane_option, get_json, token_file_option
from pilotfish.cli.tables import print_table

__all__ = ["proxy_config"]

_TYPE_OF = {
    "listeners": "LDS",
    "routes": "RDS",
    "clusters": "CDS",
    "endpoints": "EDS",
    "secrets": "SDS",
}


def _first_cert(source: dict[str, Any]) -> tuple[str, str]:
    """(serial hex, not-after) of the first PEM certificate in an inline DataSource."""
    try:
        pem = base64.b64decode(source.get("inline_bytes", ""), validate=True)
        cert = x509.load_pem_x509_certificate(pem)
    except (binascii.Error, ValueError):
        return "", ""
    return f"{cert.serial_number:x}", cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _secret_rows(resources: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    # Only names and certificate facts: the key was redacted by the control plane.
    rows = []
    for r in resources:
        if "validation_context" in r:
            kind, source = "CA", r["validation_context"].get("trusted_ca", {})
        else:
            kind, source = "Cert Chain", r.get("tls_certificate", {}).get("certificate_chain", {})
        rows.append([r.get("name", ""), kind, *_first_cert(source)])
    return ["RESOURCE NAME", "TYPE", "SERIAL NUMBER", "NOT AFTER"], rows


def _address(sa: dict[str, Any]) -> tuple[str, str]:
    return str(sa.get("address", "")), str(sa.get("port_value", ""))


def _rows(kind: str, resources: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    if kind == "secrets":
        return _secret_rows(resources)
    if kind == "listeners":
        rows = []
        for r in resources:
            addr, port = _address(r.get("address", {}).get("socket_address", {}))
            bind = r.get("bind_to_port", True)
            rows.append([r.get("name", ""), addr, port, "" if bind in (True, None) else "no-bind"])
        return ["NAME", "ADDRESS", "PORT", "NOTE"], rows
    if kind == "routes":
        rows = []
        for r in resources:
            for vh in r.get("virtual_hosts", []):
                domains = vh.get("domains", [])
                shown = ", ".join(domains[:3]) + (
                    f" +{len(domains) - 3} more" if len(domains) > 3 else ""
                )
                rows.append(
                    [r.get("name", ""), vh.get("name", ""), shown, str(len(vh.get("routes", [])))]
                )
        return ["NAME", "VIRTUAL HOST", "DOMAINS", "ROUTES"], rows
    if kind == "clusters":
        rows = []
        for r in resources:
            parts = r.get("name", "").split("|")
            if len(parts) == 4:
                direction, port, subset, host = parts
            else:
                direction, port, subset, host = "", "", "", r.get("name", "")
            kind_name = r.get("type", "EDS" if "eds_cluster_config" in r else "")
            rows.append([host or r.get("name", ""), port, subset, direction, kind_name])
        return ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE"], rows
    rows = []
    for r in resources:
        for group in r.get("endpoints", []):
            for ep in group.get("lb_endpoints", []):
                addr, port = _address(
                    ep.get("endpoint", {}).get("address", {}).get("socket_address", {})
                )
                rows.append([f"{addr}:{port}", r.get("cluster_name", "")])
    return ["ENDPOINT", "CLUSTER"], rows


@click.command("proxy-config")
@click.argument("kind", type=click.Choice(sorted(_TYPE_OF)))
@click.argument("proxy_id")
@control_plane_option()
@token_file_option()
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
def proxy_config(
    kind: str, proxy_id: str, control_plane: str, token_file: str | None, output: str
) -> None:
    """Show the listeners, routes, clusters, endpoints or secrets sent to PROXY_ID
    (name.namespace). Secrets show their certificates, never their keys."""
    api = connect(control_plane, token_file)
    dump = get_json(api, "/debug/config_dump", {"proxy": proxy_id})
    section = dump.get("types", {}).get(_TYPE_OF[kind], {})
    resources: list[dict[str, Any]] = section.get("resources", [])
    if output == "json":
        click.echo(json.dumps(resources, indent=2, sort_keys=True))
        return
    if output == "yaml":
        click.echo(yaml.safe_dump(resources, sort_keys=True), nl=False)
        return
    headers, rows = _rows(kind, resources)
    table = Table(box=None, header_style="bold")
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*row)
    print_table(Console(), table)
