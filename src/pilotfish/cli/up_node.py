"""The options of ``pilotfish up`` for several hosts: a node (``--control-plane``)
and a control-plane host other hosts' nodes reach (``--listen-address``)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import click

from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.settings_checks import parse_urls

__all__ = ["node_argv", "node_options", "node_settings"]

_OPTIONS = [
    click.option(
        "--control-plane",
        "remote_control_planes",
        default=None,
        metavar="URL[,URL...]",
        help="Node mode: run only the pods of PATHS, against these control planes (their "
        "HTTP API, e.g. http://HOST:15014; several replicas for failover). No local control "
        "plane, CA, gateways or addons; pods get join tokens and register their endpoints "
        "through the API.",
    ),
    click.option(
        "--api-token-file",
        "remote_token_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Node mode: the control planes' API token (their <state-dir>/api-token).",
    ),
    click.option(
        "--node-name",
        default=None,
        help="Node mode: this node's name, in its WorkloadEntries (<pod>-<node>) "
        "[default: the host name].",
    ),
    click.option(
        "--listen-address",
        "listen_addresses",
        multiple=True,
        metavar="IP",
        help="Another address this host's control planes listen on (xDS over mTLS, the "
        "CA and the HTTP API, on their ports), e.g. the host's own for other hosts' nodes "
        "(repeatable).",
    ),
]


def node_options(f: Any) -> Any:
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def node_settings(net: dict[str, Any]) -> dict[str, Any]:
    """The ``RuntimeSettings`` fields of these options (UsageError if malformed)."""
    out: dict[str, Any] = {}
    listen = tuple(net.get("listen_addresses") or ())
    for address in listen:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            hint = "--listen-address"
            raise click.BadParameter(f"{address!r} is not an IP address", param_hint=hint) from None
    out["listen_addresses"] = listen
    urls = net.get("remote_control_planes")
    if urls is None:
        for key, flag in (("remote_token_file", "--api-token-file"), ("node_name", "--node-name")):
            if net.get(key):
                raise click.UsageError(f"{flag} is for node mode (--control-plane)")
        return out
    try:
        out["remote_control_planes"] = parse_urls(str(urls))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--control-plane") from None
    token = net.get("remote_token_file")
    out["remote_token_file"] = str(Path(token).resolve()) if token else None
    out["node_name"] = str(net.get("node_name") or socket.gethostname().split(".")[0].lower())
    return out


def node_argv(s: RuntimeSettings) -> list[str]:
    """These options as the detached supervisor's command line takes them."""
    argv: list[str] = []
    for address in s.listen_addresses:
        argv += ["--listen-address", address]
    if s.node_mode:
        argv += ["--control-plane", ",".join(s.remote_control_planes), "--node-name", s.node_name]
        if s.remote_token_file:
            argv += ["--api-token-file", s.remote_token_file]
    return argv
