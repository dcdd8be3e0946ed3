"""Which pods are ambient, and the ambient pods of one host as the node proxy sees them.

``dataplane_mode`` decides a pod's mode as Istio does: the pod's own
``istio.io/dataplane-mode`` label wins (``ambient``, or ``none`` to opt out),
then its namespace's label, then the mesh default (``pilotfish up
--dataplane``). ``node_pods`` reads the runtime's registrations of one host's
ambient pods (``pilotfish.model.ambient``) from the snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.model.ambient import (
    DATAPLANE_AMBIENT,
    DATAPLANE_MODE_LABEL,
    DATAPLANE_SIDECAR,
    NETNS_ANNOTATION,
    NODE_ANNOTATION,
    POD_LABELS_ANNOTATION,
    POD_PORTS_ANNOTATION,
)
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import WORKLOAD_NAME_ANNOTATION

__all__ = ["LocalPod", "dataplane_mode", "node_pods"]


def dataplane_mode(
    default: str, namespace_labels: Mapping[str, str], pod_labels: Mapping[str, str]
) -> str:
    """``ambient`` or ``sidecar`` for a pod (``none`` on either level means sidecar)."""
    for labels in (pod_labels, namespace_labels):
        value = labels.get(DATAPLANE_MODE_LABEL)
        if value:
            return DATAPLANE_AMBIENT if value == DATAPLANE_AMBIENT else DATAPLANE_SIDECAR
    return DATAPLANE_AMBIENT if default == DATAPLANE_AMBIENT else DATAPLANE_SIDECAR


@dataclass(frozen=True, slots=True)
class LocalPod:
    """An ambient pod of the node proxy's host (from its runtime registration)."""

    name: str
    namespace: str
    ip: str
    netns: str
    service_account: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[int, ...]
    workload: str = ""

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"


def _json_object(text: str) -> dict[str, str]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _json_ports(text: str) -> tuple[int, ...]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(sorted({int(p) for p in value if isinstance(p, int) and 0 < p < 65536}))


def node_pods(snapshot: Snapshot, node: str) -> tuple[LocalPod, ...]:
    """The ambient pods registered on ``node``, sorted by namespace and name."""
    out = []
    for res in snapshot.of_kind("WorkloadEntry"):
        notes = res.metadata.annotations
        if notes.get(NODE_ANNOTATION) != node or not notes.get(NETNS_ANNOTATION):
            continue
        spec = res.spec
        assert isinstance(spec, WorkloadEntrySpec)
        if not spec.address:
            continue
        out.append(
            LocalPod(
                name=res.name,
                namespace=res.namespace,
                ip=spec.address,
                netns=notes[NETNS_ANNOTATION],
                service_account=spec.service_account or "default",
                labels=tuple(sorted(_json_object(notes.get(POD_LABELS_ANNOTATION, "")).items())),
                ports=_json_ports(notes.get(POD_PORTS_ANNOTATION, "")),
                workload=notes.get(WORKLOAD_NAME_ANNOTATION) or res.name,
            )
        )
    return tuple(sorted(out, key=lambda p: (p.namespace, p.name)))
