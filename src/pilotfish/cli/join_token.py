"""``pilotfish join-token create``: a single-use token that lets one host's workload join.

Asks the running control plane (its HTTP API, with the admin's API token, as
``apply`` does) to create the token, and writes what the joining host needs
to ``-o FILE`` (created 0600): the token, its grant, the trust domain and the
mesh root certificate. The token is not printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pilotfish.cli.client import call_api, connect, control_plane_option, token_file_option
from pilotfish.cli.timefmt import duration_seconds
from pilotfish.controlplane.join_token_api import JOIN_TOKENS_PATH
from pilotfish.fsutil import atomic_write_text

__all__ = ["JOIN_FILE_KEYS", "join_token", "read_join_file"]

#: What a join file holds (``read_join_file`` requires them all).
JOIN_FILE_KEYS = ("token", "namespace", "serviceAccount", "workloadGroup", "expiresAt", "rootCert")


def read_join_file(path: Path) -> dict[str, Any]:
    """The join file written by ``create`` (a ClickException if unusable)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.ClickException(
            f"cannot read the join token file {path}: {exc.strerror}"
        ) from None
    except ValueError as exc:
        raise click.ClickException(f"the join token file {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or any(k not in doc for k in JOIN_FILE_KEYS):
        raise click.ClickException(
            f"{path} is not a join token file (written by `pilotfish join-token create`)"
        )
    return doc


@click.group("join-token")
def join_token() -> None:
    """Join tokens: single-use, expiring credentials for hosts that join the mesh."""


@join_token.command("create")
@click.option("--namespace", "-n", required=True, help="Namespace of the joining workload.")
@click.option(
    "--service-account",
    default="",
    help="Its service account [default: the WorkloadGroup's template.serviceAccount, "
    "else 'default'].",
)
@click.option("--workload-group", default="", help="WorkloadGroup the workload registers in.")
@click.option(
    "--ttl",
    default="1h",
    show_default=True,
    callback=duration_seconds,
    help="How long the token is valid.",
)
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write the token to (created 0600); give it to `pilotfish join --token`.",
)
@control_plane_option()
@token_file_option()
def create(
    namespace: str,
    service_account: str,
    workload_group: str,
    ttl: int,
    output: str,
    control_plane: str,
    token_file: str | None,
) -> None:
    """Create a join token for NAMESPACE/SERVICE-ACCOUNT (an admin action: needs the API token)."""
    api = connect(control_plane, token_file)
    body: dict[str, Any] = {"namespace": namespace, "ttlSeconds": ttl}
    if service_account:
        body["serviceAccount"] = service_account
    if workload_group:
        body["workloadGroup"] = workload_group
    response = call_api(api, "POST", JOIN_TOKENS_PATH, body)
    if not response.ok or not isinstance(response.body, dict):
        raise click.ClickException(f"creating the join token failed: {response.error_message()}")
    doc = {k: response.body.get(k) for k in (*JOIN_FILE_KEYS, "trustDomain", "labels")}
    atomic_write_text(output, json.dumps(doc, indent=2) + "\n", mode=0o600)
    group = f", WorkloadGroup {doc['workloadGroup']}" if doc["workloadGroup"] else ""
    click.echo(
        f"join token for {doc['namespace']}/{doc['serviceAccount']}{group} written to "
        f"{output} (single use, valid {ttl}s)"
    )
