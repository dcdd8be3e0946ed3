"""Re-adopting a running mesh after its supervisor died: what may be taken over.

Theory of operation. The supervisor of ``pilotfish up`` is one process; pods
and gateways are processes in sessions of their own, and Envoy keeps serving
its last configuration while nobody talks to it. So when the supervisor dies
(``kill -9``, OOM), traffic keeps flowing, and the next ``up`` with the same
state dir and settings takes the running pieces over instead of tearing them
down:

1. The run as a whole (``why_not_adopt``): the recorded state must come from
   a run that reached ``ready``, be written in this ``STATE_VERSION``, with
   the same settings (``run_fingerprint``: mode, bridge, address ranges,
   ports, profile, trust domain, mTLS, manifests, mesh config) and fixed
   ports (the proxies reconnect to the same addresses). Otherwise everything
   is torn down as before, and the caller says why.
2. Each pod (``decide_pod``, a pure function of the recorded entry, its
   ``pids.json`` records and the live facts gathered by ``pod_facts``): its
   entry must be complete, its pod directory and (transparent mode) network
   namespace must exist, and its sidecar's pid must still have the recorded
   kernel start time (a recycled pid is someone else). A live app with the
   recorded start time is adopted too; a missing one is restarted by the
   runner as after a crash. A pod that had completed stays completed. Any
   other pod is discarded: its recorded processes are killed and its network
   removed, and reconcile starts it afresh.
3. Gateways (``decide_gateway``) likewise, by their recorded agent process.

The supervisor (``mesh.py``) then watches the adopted processes through
pidfds (``supervised.AdoptedProcess``), probes the adopted pods once,
registers the ready ones, and only then starts its control plane, so the
first configuration any reconnecting proxy receives already holds every
endpoint it had before: no proxy ever sees an empty endpoint set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotfish.api.resource import Resource
from pilotfish.runtime.process import ProcessRecord, process_start_time
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import MeshState

__all__ = [
    "STATE_VERSION",
    "PodDecision",
    "PodFacts",
    "decide_gateway",
    "decide_pod",
    "live_start_times",
    "pod_facts",
    "run_fingerprint",
    "why_not_adopt",
    "workload_hash",
]

# Bump when what adoption reads from the state changes meaning.
STATE_VERSION = 1

SIDECAR = "sidecar"
APP = "app"
GATEWAY_AGENT = "agent"
_COMPLETED = ("Succeeded", "Failed")
_POD_FIELDS = ("ip", "namespace", "spec", "workload_hash")


def run_fingerprint(settings: RuntimeSettings) -> dict[str, Any]:
    """The settings a run's processes depend on; equal fingerprints can adopt each other."""
    return {
        "mode": settings.mode,
        "profile": settings.profile,
        "bridge": settings.bridge,
        "pod_cidr": settings.pod_cidr,
        "service_cidr": settings.service_cidr,
        "explicit_cidr": settings.explicit_cidr,
        "ingress_port": settings.ingress_port,
        "control_plane_port": settings.control_plane_port,
        "xds_port": settings.xds_port,
        "secure_port": settings.secure_port,
        "xds_mtls_port": settings.xds_mtls_port,
        "trust_domain": settings.trust_domain,
        "cert_ttl_seconds": settings.cert_ttl_seconds,
        "mtls": settings.mtls,
        "xds_protocol": settings.xds_protocol,
        "dataplane": settings.dataplane,
        "manifests": list(settings.manifests),
        "mesh_config_file": settings.mesh_config_file or "",
        "image_map_file": settings.image_map_file or "",
        "container_runtime": settings.container_runtime,
    }


def why_not_adopt(previous: MeshState | None, settings: RuntimeSettings) -> str | None:
    """None if ``previous``'s pods and gateways may be adopted, else the reason."""
    if previous is None:
        return "no earlier run is recorded"
    if previous.phase != "ready":
        return f"the earlier run was {previous.phase}, not ready"
    if previous.version != STATE_VERSION:
        return "the earlier run was recorded by another version of the runtime"
    ports = (settings.control_plane_port, settings.xds_port, settings.secure_port)
    if 0 in (*ports, settings.xds_mtls_port):
        return "ports chosen at random cannot be kept for the running proxies"
    now = run_fingerprint(settings)
    changed = [
        f"{key} ({previous.run.get(key)!r} -> {value!r})"
        for key, value in now.items()
        if previous.run.get(key) != value
    ]
    if changed:
        return "the settings differ from the earlier run: " + ", ".join(changed)
    if "node-proxy" in previous.gateways:
        # Ambient pods and their node proxy are started afresh (not adopted yet).
        return "the earlier run had ambient pods, which are not adopted"
    return None


def workload_hash(workload: Resource) -> str:
    """A stable hash of what a Workload's pods are made of (spec, labels and
    annotations: ``sidecar.istio.io/inject`` decides whether a pod has a sidecar)."""
    doc: dict[str, object] = {
        "spec": workload.spec.model_dump(mode="json"),
        "labels": dict(sorted((workload.metadata.labels or {}).items())),
    }
    if workload.metadata.annotations:  # absent ones keep the hashes recorded before
        doc["annotations"] = dict(sorted(workload.metadata.annotations.items()))
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PodFacts:
    """What is live on the host for one recorded pod.

    ``netns_exists`` is None in explicit mode (no namespace); ``start_times``
    maps each recorded role to the current kernel start time of its pid
    (None: no such process).
    """

    pod_dir_exists: bool
    netns_exists: bool | None
    start_times: Mapping[str, int | None]


@dataclass(frozen=True, slots=True)
class PodDecision:
    """``adopt``: take the pod over (``adopt_app``: its app too; ``completed``: it
    had completed and has nothing running). Otherwise it is killed and restarted."""

    adopt: bool
    reason: str
    adopt_app: bool = False
    completed: bool = False


def _same_process(record: ProcessRecord | None, start_time: int | None) -> bool:
    return (
        record is not None
        and record.start_time is not None
        and start_time is not None
        and start_time == record.start_time
    )


def decide_pod(
    entry: Mapping[str, Any], records: Mapping[str, ProcessRecord], facts: PodFacts
) -> PodDecision:
    """Adopt or discard one recorded pod (see the module docstring)."""
    missing = [name for name in _POD_FIELDS if not entry.get(name)]
    if missing:
        return PodDecision(False, f"its record lacks {', '.join(missing)}")
    if not facts.pod_dir_exists:
        return PodDecision(False, "its pod directory is gone")
    if facts.netns_exists is False:
        return PodDecision(False, f"its network namespace {entry.get('netns')} is gone")
    if entry.get("dataplane", "sidecar") != "sidecar":
        # Its readiness process is no agent to adopt; it is started afresh.
        return PodDecision(False, "it had no sidecar")
    if entry.get("phase") in _COMPLETED:
        return PodDecision(True, f"it had completed ({entry['phase']})", completed=True)
    sidecar = records.get(SIDECAR)
    if sidecar is None:
        return PodDecision(False, "no sidecar is recorded")
    if not _same_process(sidecar, facts.start_times.get(SIDECAR)):
        return PodDecision(False, f"its sidecar (pid {sidecar.pid}) is not running any more")
    app = records.get(APP)
    if _same_process(app, facts.start_times.get(APP)):
        return PodDecision(True, "sidecar and app are running", adopt_app=True)
    return PodDecision(True, "its sidecar is running; its app is not and is restarted")


def decide_gateway(
    entry: Mapping[str, Any], record: ProcessRecord | None, start_time: int | None
) -> str | None:
    """None if the recorded gateway can be adopted, else why not."""
    if not entry.get("admin_port") or not entry.get("health_port"):
        return "its record lacks its ports"
    if record is None:
        return "no agent process is recorded"
    if not _same_process(record, start_time):
        return f"its agent (pid {record.pid}) is not running any more"
    return None


def live_start_times(records: Mapping[str, ProcessRecord]) -> dict[str, int | None]:
    """role -> the current kernel start time of the recorded pid (None: gone)."""
    return {role: process_start_time(r.pid) for role, r in records.items()}


def pod_facts(
    entry: Mapping[str, Any],
    records: Mapping[str, ProcessRecord],
    pod_dir: Path,
    namespaces: set[str] | None,
) -> PodFacts:
    """Gather the live facts ``decide_pod`` needs (``namespaces``: None in explicit mode)."""
    netns = entry.get("netns")
    exists = None if namespaces is None else bool(netns) and netns in namespaces
    return PodFacts(pod_dir.is_dir(), exists, live_start_times(records))
