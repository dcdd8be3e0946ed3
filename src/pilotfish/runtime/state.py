"""The state file of a running local mesh: how later commands find it, and clean up after it.

Written atomically (temp file + rename) whenever something the host would be
left with changes, so even after ``kill -9`` of the supervisor, ``pilotfish
down`` (or the next ``up``) knows which namespaces, links, rules and
processes to remove, or (``runtime/adoption.py``) which pods and gateways the
next ``up`` can take over: ``run`` is the fingerprint of the settings the run
was started with, ``ipam`` the pod address allocations, ``pods`` per pod its
address, recorded spec, workload hash, app ports, phase and restarts (its
processes are in the pod's ``pids.json``), ``gateways`` per gateway its ports.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pilotfish.fsutil import atomic_write_text
from pilotfish.runtime.network.base import HostResources

__all__ = ["MeshState", "process_alive", "read_state", "write_state"]


@dataclass
class MeshState:
    pid: int = 0
    mode: str = "transparent"
    profile: str = "default"
    phase: str = "starting"  # starting | ready | failed | stopping | stopped
    message: str = ""
    control_plane: str = ""  # http://127.0.0.1:15014
    ingress: str = ""  # http://127.0.0.1:8080
    bridge: str = ""
    network: HostResources = field(default_factory=HostResources)
    # "<namespace>/<pod>" -> {ip, netns, namespace, workload, spec, workload_hash,
    # app_ports, phase, message, restarts}
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)  # gateway name -> process group
    started_at: float = 0.0
    # Format of what adoption reads (``adoption.STATE_VERSION``); 0: written by a
    # runtime that could not be adopted from.
    version: int = 0
    run: dict[str, Any] = field(default_factory=dict)  # settings fingerprint
    ipam: str = ""  # ``Ipam.to_json()`` of the pod network
    gateways: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {ports}
    addons: dict[str, str] = field(default_factory=dict)  # running addon name -> URL
    # "Kind namespace/name" -> why no pod runs for that Kubernetes workload.
    not_run: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MeshState:
        net = HostResources(**data.get("network", {}))
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "network"}
        return cls(network=net, **fields)


def write_state(path: Path, state: MeshState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(state.to_json(), indent=2, sort_keys=True))


def read_state(path: Path) -> MeshState | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return MeshState.from_json(data)


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
