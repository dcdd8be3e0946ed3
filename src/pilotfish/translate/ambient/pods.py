"""Which pods are ambient, and the ambient pods of one host as the node proxy sees them.

``dataplane_mode`` decides a pod's mode (``sidecar``, ``ambient``, or
``none``: out of the mesh) from the labels Istio reads, in Istio's order:

1. Sidecar injection, from the pod's ``sidecar.istio.io/inject`` label (else
   its deprecated annotation of the same name) and the namespace's
   ``istio-injection`` label (``istio.io/rev`` counts as enabled). As in
   Istio's injector, either one disabled means no sidecar; otherwise either
   one enabled means a sidecar, whatever the ambient labels say (Istio's CNI
   leaves pods with a sidecar out of ambient).
2. Ambient: the pod's own ``istio.io/dataplane-mode`` label (``ambient``, or
   ``none`` to opt out), then its namespace's, then the mesh default
   (``pilotfish up --dataplane``).
3. A pod neither ambient nor injected by an explicit label gets the mesh's
   default sidecar, unless injection is disabled: then it is out of the mesh.
   This is where Pilotfish differs from a stock Istio install, whose injector
   only serves labelled namespaces: ``pilotfish up`` meshes every pod it
   runs unless told otherwise, like Istio with
   ``enableNamespacesByDefault``.

``node_pods`` reads the runtime's registrations of one host's ambient pods
(``pilotfish.model.ambient``) from the snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.model.ambient import (
    DATAPLANE_AMBIENT,
    DATAPLANE_MODE_LABEL,
    DATAPLANE_NONE,
    DATAPLANE_SIDECAR,
    INJECT_LABEL,
    NAMESPACE_INJECTION_LABEL,
    NETNS_ANNOTATION,
    NODE_ANNOTATION,
    POD_LABELS_ANNOTATION,
    POD_PORTS_ANNOTATION,
    REVISION_LABEL,
)
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import WORKLOAD_NAME_ANNOTATION

__all__ = ["LocalPod", "dataplane_mode", "injection", "node_pods"]

# Istio reads these values of ``sidecar.istio.io/inject`` as true.
_TRUE = frozenset({"y", "yes", "true", "on"})


def _pod_injection(labels: Mapping[str, str], annotations: Mapping[str, str]) -> bool | None:
    """The pod's own say on injection: label first, then annotation; Istio's
    true values, anything else set means false, unset None."""
    value = labels.get(INJECT_LABEL)
    if value is None:
        value = annotations.get(INJECT_LABEL)
    if value is None or not value.strip():
        return None
    return value.strip().lower() in _TRUE


def _namespace_injection(labels: Mapping[str, str]) -> bool | None:
    value = labels.get(NAMESPACE_INJECTION_LABEL)
    if value == "disabled":
        return False
    if value == "enabled" or labels.get(REVISION_LABEL):
        return True
    return None


def injection(
    namespace_labels: Mapping[str, str],
    pod_labels: Mapping[str, str],
    pod_annotations: Mapping[str, str] | None = None,
) -> bool | None:
    """False if either the pod or its namespace disables injection, else True if
    either enables it, else None (nobody said)."""
    says = (
        _pod_injection(pod_labels, pod_annotations or {}),
        _namespace_injection(namespace_labels),
    )
    if False in says:
        return False
    return True if True in says else None


def dataplane_mode(
    default: str,
    namespace_labels: Mapping[str, str],
    pod_labels: Mapping[str, str],
    pod_annotations: Mapping[str, str] | None = None,
) -> str:
    """``sidecar``, ``ambient`` or ``none`` for a pod (see the module's docstring)."""
    inject = injection(namespace_labels, pod_labels, pod_annotations)
    if inject is True:
        return DATAPLANE_SIDECAR
    ambient = default == DATAPLANE_AMBIENT
    for labels in (pod_labels, namespace_labels):
        value = labels.get(DATAPLANE_MODE_LABEL)
        if value:
            ambient = value == DATAPLANE_AMBIENT
            break
    if ambient:
        return DATAPLANE_AMBIENT
    return DATAPLANE_NONE if inject is False else DATAPLANE_SIDECAR


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
