"""Checks of ``pilotfish up``'s settings that need none of the runtime.

The front of ``pilotfish up --detach`` checks its flags, starts the
supervisor and waits for it; these checks keep it from importing the mesh
runtime, the control plane and the agent (over a second of CPU) only to
refuse a flag. The modules the checks belong to (``addons``, ``node_mode``,
``remote_control_plane``) export them too.
"""

from __future__ import annotations

import re
import urllib.parse

from pilotfish.runtime.settings import RuntimeSettings

__all__ = ["ADDONS", "AddonError", "node_mode_problem", "parse_addons", "parse_urls"]

#: Every addon name ``--addons`` accepts, in start order.
ADDONS: tuple[str, ...] = ("etcd", "prometheus", "tracing", "dashboard")

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


class AddonError(ValueError):
    """An addon cannot be started (the message is meant for the user)."""


def parse_addons(text: str) -> tuple[str, ...]:
    """``"prometheus,dashboard"`` -> the names in start order; unknown names are errors."""
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(ADDONS))
    if unknown:
        raise AddonError(f"unknown addon(s) {', '.join(unknown)}: choose from {', '.join(ADDONS)}")
    return tuple(n for n in ADDONS if n in names)


def parse_urls(text: str) -> tuple[str, ...]:
    """``URL[,URL...]`` of HTTP APIs (``http://HOST:PORT``); ValueError if malformed."""
    out: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parsed = urllib.parse.urlsplit(item)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"bad control-plane URL {item!r}: expected http://HOST:PORT")
        if parsed.path not in ("", "/") or parsed.query:
            raise ValueError(f"bad control-plane URL {item!r}: no path, just http://HOST:PORT")
        out.append(item.rstrip("/"))
    if not out:
        raise ValueError("at least one control-plane URL is required")
    return tuple(out)


def node_mode_problem(s: RuntimeSettings) -> str | None:
    """Why these node-mode settings cannot run (None: they can)."""
    if not s.node_mode:
        return None
    conflicts = [
        ("--control-plane-replicas", s.control_plane_replicas != 1),
        ("--addons", bool(s.enabled_addons)),
        ("--config-store", s.config_store is not None),
        ("--listen-address", bool(s.listen_addresses)),
        ("--no-mtls", not s.mtls),
        ("--dataplane ambient", s.dataplane == "ambient"),
    ]
    bad = [flag for flag, present in conflicts if present]
    if bad:
        return (
            f"a node (--control-plane) runs only pods: {', '.join(bad)} belong to the host "
            "that runs the control plane"
        )
    if s.mode != "transparent":
        return (
            "a node (--control-plane) needs transparent mode: other hosts reach its pods "
            "at their own addresses"
        )
    if not s.remote_token_file:
        return "a node (--control-plane) needs --api-token-file (the control plane's API token)"
    if not _NODE_NAME.match(s.node_name):
        return (
            f"--node-name {s.node_name!r}: a node needs a name of 1-32 lowercase letters, "
            "digits and '-' (its WorkloadEntries are named <pod>-<node>)"
        )
    if not s.manifests:
        return "a node needs the manifests of the pods it runs"
    return None
