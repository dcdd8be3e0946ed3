"""Live registrations: what the runtime tells the registry about running pods.

A ready pod becomes a WorkloadEntry (name = pod, labels = its workload's
labels, address = pod IP) in an in-memory store layered over the config
files, so Services select pods by labels exactly as they select
WorkloadEntries. A pod that stops being ready is unregistered, so traffic
only ever goes to ready pods, as with Kubernetes endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilotfish.api.base import ObjectMeta
from pilotfish.api.core.service import ServicePort, ServiceSpec
from pilotfish.api.diagnostics import SourceRef
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.registry.model import WORKLOAD_NAME_ANNOTATION

__all__ = ["RUNTIME_SOURCE", "gateway_service", "workload_entry"]

RUNTIME_SOURCE = SourceRef("<runtime>")


def workload_entry(
    pod: str,
    namespace: str,
    ip: str,
    labels: Mapping[str, str],
    service_account: str,
    ports: Mapping[str, int] | None = None,
    workload: str = "",
) -> Resource:
    """The WorkloadEntry of ``pod``; ``workload`` names the Workload it runs for
    (metrics label the endpoint with it) when that is not the pod's own name."""
    spec = WorkloadEntrySpec(
        address=ip,
        labels=dict(labels),
        service_account=service_account,
        ports=dict(ports or {}),
    )
    return Resource(
        api_version="networking.istio.io/v1",
        kind="WorkloadEntry",
        metadata=ObjectMeta(
            name=pod,
            namespace=namespace,
            labels=dict(labels),
            annotations={WORKLOAD_NAME_ANNOTATION: workload} if workload else {},
        ),
        spec=spec,
        source=RUNTIME_SOURCE,
    )


def gateway_service(
    name: str, namespace: str, selector: Mapping[str, str], ports: Sequence[tuple[str, int, int]]
) -> Resource:
    """A Service for a gateway: ``ports`` are (name, port, targetPort)."""
    spec = ServiceSpec(
        selector=dict(selector),
        ports=[ServicePort(name=n, port=p, target_port=t) for n, p, t in ports],
    )
    return Resource(
        api_version="v1",
        kind="Service",
        metadata=ObjectMeta(name=name, namespace=namespace, labels=dict(selector)),
        spec=spec,
        source=RUNTIME_SOURCE,
    )
