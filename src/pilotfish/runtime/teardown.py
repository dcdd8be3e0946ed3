"""Removing what an earlier run of the local mesh left behind.

Used by ``pilotfish down`` once the supervisor has gone, and by ``pilotfish
up`` before it starts, so a crash (even ``kill -9`` of the supervisor) never
leaves namespaces, links, rules or processes on the host (a ``pilotfish up``
that re-adopts the running pods, see ``adoption``, does not call it). Sources, in order:
the recorded state (processes, host resources), podman containers labelled
with the state directory (a SIGKILLed ``podman run`` leaves its container
running), then a scan by the names the runtime uses (network namespaces
``pf-*``, veths ``pfv*``, the bridge, rules tagged ``pilotfish``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

from pilotfish.ca.tokens import TOKEN_STORE_FILE
from pilotfish.runtime.network.base import HostResources
from pilotfish.runtime.podman import remove_mesh_containers
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import MeshState, process_alive

__all__ = ["clean_leftovers", "kill_process_groups"]

log = logging.getLogger("pilotfish.runtime.teardown")


def kill_process_groups(pids: list[int]) -> int:
    """SIGKILL each process group (the runtime starts every child in its own session)."""
    killed = 0
    for pid in pids:
        if pid > 0 and process_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed += 1
    return killed


def _recorded_pod_processes(work_dir: Path) -> int:
    try:
        from pilotfish.runtime.pod import kill_recorded
    except ImportError:  # pragma: no cover - the pod runner always ships with the runtime
        return 0
    return int(kill_recorded(work_dir))


def clean_leftovers(settings: RuntimeSettings, previous: MeshState | None) -> str:
    """Remove leftovers; returns a short description of what was removed ("" if nothing)."""
    removed: list[str] = []
    # The CA's persisted pod tokens: the pods they authenticated are going away.
    with contextlib.suppress(FileNotFoundError):
        (settings.ca_dir / TOKEN_STORE_FILE).unlink()
    if previous is not None and previous.processes:
        n = kill_process_groups(list(previous.processes.values()))
        if n:
            removed.append(f"{n} gateway processes")
    if settings.work_dir.exists():
        n = _recorded_pod_processes(settings.work_dir)
        if n:
            removed.append(f"{n} pod processes")
    n = remove_mesh_containers(settings.state_dir)
    if n:
        removed.append(f"{n} container{'s' if n != 1 else ''}")
    if settings.mode == "transparent" or (previous is not None and previous.bridge):
        resources = _host_leftovers(settings, previous)
        if resources is not None:
            parts = []
            if resources.netns:
                parts.append(f"{len(resources.netns)} namespaces")
            if resources.host_veths:
                parts.append(f"{len(resources.host_veths)} veths")
            if resources.bridge:
                parts.append(f"bridge {resources.bridge}")
            if resources.iptables_rules:
                parts.append(f"{len(resources.iptables_rules)} iptables rules")
            removed += parts
    return ", ".join(removed)


def _host_leftovers(settings: RuntimeSettings, previous: MeshState | None) -> HostResources | None:
    if os.geteuid() != 0:
        return None
    from pilotfish.runtime.network.host import cleanup_leftovers, find_leftovers

    bridge = previous.bridge if previous is not None and previous.bridge else settings.bridge
    prefix = "pf-" if bridge == "pf0" else f"{bridge}-"
    found = find_leftovers(bridge, prefix)
    recorded = previous.network if previous is not None else HostResources()
    merged = HostResources(
        bridge=found.bridge or recorded.bridge,
        netns=sorted(set(found.netns) | set(recorded.netns)),
        host_veths=sorted(set(found.host_veths) | set(recorded.host_veths)),
        iptables_rules=found.iptables_rules or recorded.iptables_rules,
        files=sorted(set(found.files) | set(recorded.files)),
    )
    if not (
        merged.bridge or merged.netns or merged.host_veths or merged.iptables_rules or merged.files
    ):
        return None
    try:
        cleanup_leftovers(merged)
    except RuntimeError as exc:
        log.warning("could not remove everything left behind: %s", exc)
    return merged
