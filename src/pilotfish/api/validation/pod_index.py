"""The pods a set of configuration describes, for analyzers that match labels.

Theory of operation: Istio's analyzers look at the pods of a live cluster.
Offline, Pilotfish derives the pods from the configuration itself: each Pod,
each workload's pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job), each Pilotfish ``Workload`` and each ``WorkloadEntry`` stands for the
pods it makes, with their namespace, labels and service account. The local
runtime's own gateways are added as well (``BUILTIN_GATEWAYS``): they are not in
any file, yet Gateways select them and ``pilotfish up`` runs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pilotfish.api.core.workloads import ContainerPort, pod_template
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.api.runtime.workload import WorkloadSpec

__all__ = ["BUILTIN_GATEWAYS", "Pod", "PodIndex", "matches", "pods_of"]

#: The gateways the local runtime starts (``pilotfish.runtime.gateways``): namespace
#: and labels. The egress gateway runs in the demo profile only; analysis does
#: not know the profile, so both count.
BUILTIN_GATEWAYS: Final = (
    ("istio-system", MappingProxyType({"app": "istio-ingressgateway", "istio": "ingressgateway"})),
    ("istio-system", MappingProxyType({"app": "istio-egressgateway", "istio": "egressgateway"})),
)


@dataclass(frozen=True, slots=True)
class Pod:
    """The pods of one object. ``resource`` is None for a built-in gateway.

    ``labels_path`` and ``spec_path`` are field paths in ``resource`` for
    diagnostics; ``ports`` are the container ports (with their field paths).
    """

    namespace: str
    labels: Mapping[str, str]
    resource: Resource | None = None
    service_account: str = "default"
    labels_path: str = "metadata.labels"
    spec_path: str = "spec"
    ports: tuple[tuple[str, ContainerPort], ...] = ()


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Equality-based selection, as Services, subsets and Gateways select."""
    return all(labels.get(key) == value for key, value in selector.items())


class PodIndex:
    """Every pod of a configuration set, the built-in gateways included."""

    def __init__(self, resources: Iterable[Resource]) -> None:
        self.pods: list[Pod] = [Pod(ns, labels) for ns, labels in BUILTIN_GATEWAYS]
        for r in resources:
            pod = _pod_of(r)
            if pod is not None:
                self.pods.append(pod)

    @property
    def declared(self) -> list[Pod]:
        """The pods the configuration itself declares (not the built-in gateways)."""
        return [p for p in self.pods if p.resource is not None]

    def selected(self, selector: Mapping[str, str], namespace: str | None) -> list[Pod]:
        """Pods whose labels match ``selector``, in ``namespace`` (None: any namespace)."""
        return [
            p
            for p in self.pods
            if (namespace is None or p.namespace == namespace) and matches(selector, p.labels)
        ]


def _pod_of(r: Resource) -> Pod | None:
    spec = r.spec
    if isinstance(spec, WorkloadSpec):
        ports = tuple(
            (f"spec.ports[{i}]", ContainerPort.model_validate(p.model_dump(by_alias=True)))
            for i, p in enumerate(spec.ports)
        )
        return Pod(r.namespace, r.metadata.labels, r, spec.service_account, ports=ports)
    if isinstance(spec, WorkloadEntrySpec):
        account = spec.service_account or "default"
        return Pod(r.namespace, spec.labels, r, account, labels_path="spec.labels")
    view = pod_template(r)
    if view is None:
        return None
    container_ports: list[tuple[str, ContainerPort]] = []
    for i, container in enumerate(view.spec.containers):
        container_ports += [
            (f"{view.path}.containers[{i}].ports[{j}]", port)
            for j, port in enumerate(container.ports)
        ]
    return Pod(
        r.namespace,
        view.labels,
        r,
        view.spec.account,
        view.labels_path,
        view.path,
        tuple(container_ports),
    )


def pods_of(index: PodIndex, kinds: Sequence[str]) -> list[Pod]:
    """Declared pods whose object is of one of ``kinds``."""
    return [p for p in index.declared if p.resource is not None and p.resource.kind in kinds]
