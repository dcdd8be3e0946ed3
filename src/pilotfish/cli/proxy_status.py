"""``pilotfish proxy-status``: is every proxy in sync with the control plane?"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pilotfish.cli.client import connect, control_plane_option, get_json, token_file_option
from pilotfish.cli.tables import print_table

__all__ = ["proxy_status", "sync_state"]

_TYPES = ("CDS", "LDS", "EDS", "RDS", "SDS")


def sync_state(entry: dict[str, Any] | None) -> str:
    """SYNCED / STALE / NOT SENT / NACKED for one type of one proxy (as istioctl says)."""
    if not entry or not entry.get("sent_version"):
        return "NOT SENT"
    if entry.get("nack_message") is not None:
        return "NACKED"
    if entry.get("acked_version") == entry.get("sent_version"):
        return "SYNCED"
    return "STALE"


@click.command("proxy-status")
@control_plane_option()
@token_file_option()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def proxy_status(control_plane: str, token_file: str | None, output: str) -> None:
    """One row per connected proxy, with the sync state of each xDS type."""
    rows = get_json(connect(control_plane, token_file), "/debug/syncz")
    if output == "json":
        import json

        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    table = Table(box=None, header_style="bold")
    table.add_column("NAME")
    for t in _TYPES:
        table.add_column(t)
    table.add_column("VERSION")
    table.add_column("PROTOCOL")
    notes: list[str] = []
    for row in sorted(rows, key=lambda r: r["proxy_id"]):
        types = row.get("types", {})
        # SDS (credentialName secrets) is listed only for proxies that asked for any.
        states = [
            "-" if t == "SDS" and t not in types else sync_state(types.get(t)) for t in _TYPES
        ]
        lds = types.get("LDS") or {}
        table.add_row(
            row["proxy_id"],
            *states,
            (lds.get("sent_version") or "")[:12],
            str(row.get("protocol") or ""),
        )
        for t in _TYPES:
            msg = (types.get(t) or {}).get("nack_message")
            if msg is not None:
                notes.append(f"NACK {row['proxy_id']} {t}: {msg}")
        for name, reason in sorted((row.get("secrets_denied") or {}).items()):
            notes.append(f"REFUSED {row['proxy_id']} SDS: secret {name} ({reason})")
    console = Console()
    print_table(console, table)
    for line in notes:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
