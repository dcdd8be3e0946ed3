"""Pod networking for the local mesh: transparent (netns + capture) or explicit (loopback)."""

from __future__ import annotations

import os
import shutil

from .base import (
    PROXY_GID,
    PROXY_UID,
    CaptureConfig,
    HostResources,
    PodAddress,
    PodNetwork,
    ServiceName,
)
from .capture import capture_rules
from .commands import CommandError, Runner, run_command
from .explicit import ExplicitNetwork
from .host import cleanup_leftovers, find_leftovers
from .transparent import TransparentNetwork, netns_name, veth_name

__all__ = [
    "PROXY_GID",
    "PROXY_UID",
    "CaptureConfig",
    "CommandError",
    "ExplicitNetwork",
    "HostResources",
    "PodAddress",
    "PodNetwork",
    "Runner",
    "ServiceName",
    "TransparentNetwork",
    "capture_rules",
    "cleanup_leftovers",
    "find_leftovers",
    "is_root",
    "netns_name",
    "run_command",
    "transparent_supported",
    "veth_name",
]


def is_root() -> bool:
    """Whether this process runs with uid 0 (transparent mode needs it)."""
    return os.geteuid() == 0


def transparent_supported(runner: Runner = run_command) -> tuple[bool, str]:
    """Whether transparent mode can work here, and why not when it cannot.

    Checks root, the ``ip``, ``iptables`` and ``iptables-restore`` commands,
    and actually creates (and deletes) a throwaway network namespace.
    """
    if not is_root():
        return False, "transparent mode needs root (network namespaces and iptables)"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            return False, f"'{tool}' not found: install the {package} package"
    if shutil.which("iptables-restore") is None:
        return False, "'iptables-restore' not found: install the iptables package"
    probe = f"pilotfish-probe-{os.getpid()}"
    try:
        runner(["ip", "netns", "add", probe])
    except CommandError as exc:
        return False, f"cannot create a network namespace: {exc}"
    try:
        runner(["ip", "netns", "del", probe])
    except CommandError as exc:
        return False, f"cannot delete network namespace {probe}: {exc}"
    return True, ""
