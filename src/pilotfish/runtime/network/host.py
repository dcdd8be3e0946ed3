"""Inspecting and removing what the transparent network put on the host.

Theory of operation: a run records everything it creates in a
``HostResources``; the runtime persists it. If the process crashed before
saving, ``find_leftovers`` rediscovers the same things by name (netns with
our prefix, veths with our prefix that hang off our bridge, or off nothing
when their name is the one ``veth_name`` gives one of our namespaces, the
bridge, iptables rules tagged with our comment that name our bridge).

Two meshes on one host share the veth prefix: a veth hangs off no bridge for
a moment while its mesh creates a pod (``ip link add`` before ``ip link set
master``), so "unattached" alone would let one mesh's ``up`` or ``down``
delete the other's veth half way through creating a pod. A leftover veth
always has its peer in a namespace that still exists (deleting a namespace
deletes the pair), so naming it after the namespace is enough to tell whose
it is.
``cleanup_leftovers`` removes a ``HostResources`` best-effort: missing pieces
are fine (idempotent), real failures are collected and raised together after
everything else was tried.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from .base import HostResources
from .commands import CommandError, Runner, run_command
from .names import NETNS_ETC

__all__ = [
    "RULE_COMMENT",
    "cleanup_leftovers",
    "find_leftovers",
    "link_exists",
    "list_netns",
    "veth_name",
]

IFNAMSIZ = 15  # longest interface name the kernel accepts

# Every host iptables rule Pilotfish adds carries this comment.
RULE_COMMENT = "pilotfish"
# Tables scanned for tagged rules (only ``filter`` is used today).
_SCANNED_TABLES = ("filter", "nat")


def veth_name(netns: str, prefix: str = "pfv") -> str:
    """The host-side veth of ``netns``: ``<prefix><8 hex>``, at most 15 characters."""
    name = prefix + hashlib.sha256(netns.encode()).hexdigest()[:8]
    if len(name) > IFNAMSIZ:
        raise ValueError(f"veth prefix {prefix!r} too long: {name!r} exceeds {IFNAMSIZ} chars")
    return name


def _json(text: str) -> Any:
    text = text.strip()
    return json.loads(text) if text else []


def list_netns(runner: Runner = run_command) -> list[str]:
    """Names of all named network namespaces."""
    return sorted(str(entry["name"]) for entry in _json(runner(["ip", "-j", "netns", "list"])))


def _links(runner: Runner, *args: str) -> list[dict[str, Any]]:
    return list(_json(runner(["ip", "-j", "link", "show", *args])))


def link_exists(name: str, runner: Runner = run_command) -> bool:
    """Whether the host (current netns) has an interface called ``name``."""
    return any(link.get("ifname") == name for link in _links(runner))


def _tagged_rules(runner: Runner, bridge: str) -> list[list[str]]:
    """Delete-argv for every iptables rule with our comment that names ``bridge``."""
    found: list[list[str]] = []
    for table in _SCANNED_TABLES:
        for line in runner(["iptables", "-w", "-t", table, "-S"]).splitlines():
            tokens = shlex.split(line)
            if not tokens or tokens[0] != "-A":
                continue
            tagged = any(
                tokens[i] == "--comment" and tokens[i + 1] == RULE_COMMENT
                for i in range(len(tokens) - 1)
            )
            names_bridge = any(
                tokens[i] in ("-i", "-o") and tokens[i + 1] == bridge
                for i in range(len(tokens) - 1)
            )
            if tagged and names_bridge:
                found.append(["iptables", "-w", "-t", table, "-D", *tokens[1:]])
    return found


def find_leftovers(
    bridge: str = "pf0",
    netns_prefix: str = "pf-",
    *,
    veth_prefix: str = "pfv",
    runner: Runner = run_command,
    etc_netns: Path = NETNS_ETC,
) -> HostResources:
    """What a crashed run with these names left on the host.

    Only veths with ``veth_prefix`` that are attached to ``bridge``, or to no
    bridge and named after one of our namespaces, are reported, so another
    mesh's pods on a different bridge are never touched, not even while that
    mesh is creating one.
    """
    found = HostResources()
    if link_exists(bridge, runner):
        found.bridge = bridge
    found.netns = [ns for ns in list_netns(runner) if ns.startswith(netns_prefix)]
    ours_unattached = {veth_name(ns, veth_prefix) for ns in found.netns}
    found.host_veths = sorted(
        str(link["ifname"])
        for link in _links(runner, "type", "veth")
        if str(link.get("ifname", "")).startswith(veth_prefix)
        and (
            link.get("master") == bridge
            or (link.get("master") is None and link.get("ifname") in ours_unattached)
        )
    )
    if shutil.which("iptables"):
        found.iptables_rules = _tagged_rules(runner, bridge)
    if etc_netns.is_dir():
        found.files = sorted(
            str(p) for p in etc_netns.iterdir() if p.is_dir() and p.name.startswith(netns_prefix)
        )
    return found


def _remove_tree(path: str, etc_netns: Path) -> None:
    target = Path(path)
    # Persisted state is input: never delete anything outside /etc/netns/.
    if target.parent != etc_netns:
        raise ValueError(f"refusing to delete {path}: not a directory of {etc_netns}")
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)


def cleanup_leftovers(
    resources: HostResources,
    *,
    runner: Runner = run_command,
    etc_netns: Path = NETNS_ETC,
) -> None:
    """Remove everything in ``resources``; missing pieces are not errors.

    Order: host rules, veths (deleting one end removes the pair), namespaces,
    the bridge, then ``/etc/netns`` directories. Raises ``RuntimeError``
    listing every failure after attempting all removals.
    """
    errors: list[str] = []

    def attempt(argv: list[str]) -> None:
        try:
            runner(argv)
        except CommandError as exc:
            errors.append(str(exc))

    if resources.iptables_rules:
        for rule in resources.iptables_rules:
            check = ["-C" if token == "-D" else token for token in rule]
            try:
                runner(check)
            except CommandError:
                continue  # already gone
            attempt(list(rule))
    links = {str(link.get("ifname")) for link in _links(runner)}
    for veth in resources.host_veths:
        if veth in links:
            attempt(["ip", "link", "del", veth])
    existing_ns = set(list_netns(runner))
    for ns in resources.netns:
        if ns in existing_ns:
            attempt(["ip", "netns", "del", ns])
    if resources.bridge and resources.bridge in links:
        attempt(["ip", "link", "del", resources.bridge])
    for path in resources.files:
        try:
            _remove_tree(path, etc_netns)
        except (OSError, ValueError) as exc:
            errors.append(f"cannot remove {path}: {exc}")
    if resources.files:
        # /etc/netns itself goes too once empty (another user's files keep it).
        with contextlib.suppress(OSError):
            etc_netns.rmdir()
    if errors:
        raise RuntimeError("cleanup incomplete:\n  " + "\n  ".join(errors))
