"""Endpoints of a selector-less Service from its EndpointSlices.

Theory of operation (Kubernetes' and Istio's rules): a Service without a
selector has the endpoints its EndpointSlices list, the slices being those in
its namespace labelled ``kubernetes.io/service-name: <service>``. A slice port
serves the service port of the same name (an unnamed slice port serves a
one-port Service); its number is the endpoint's port. An endpoint counts
unless its ``ready`` condition is False, and only its first address is used,
as kube-proxy does. FQDN slices are skipped (Istio does too). When the address
is a mesh pod's (a registered WorkloadEntry of the namespace), the instance
takes that workload's labels, service account and locality, as Istio looks a
slice's pod up by IP: mTLS and subsets then work as for selected pods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pilotfish.api.core.endpoint_slice import SERVICE_NAME_LABEL, EndpointSliceSpec
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.registry.model import WORKLOAD_NAME_ANNOTATION, Instance, MeshService, ServicePort

__all__ = ["slice_instances"]


def _slice_port(spec: EndpointSliceSpec, sp: ServicePort, service: Resource) -> int | None:
    ports = spec.ports or []
    declared = {p.name or "": p.port for p in ports}
    names = [p.name for p in getattr(service.spec, "ports", [])]
    wanted = sp.name if sp.name in names else ""
    if wanted in declared:
        return declared[wanted]
    return None


def slice_instances(
    service: Resource,
    svc: MeshService,
    slices: Sequence[Resource],
    workloads: Sequence[Resource],
) -> Iterator[Instance]:
    """The instances ``service`` (selector-less, registered as ``svc``) gets from ``slices``."""
    by_address: dict[str, Resource] = {}
    for we in workloads:
        assert isinstance(we.spec, WorkloadEntrySpec)
        if we.spec.address:
            by_address.setdefault(we.spec.address, we)
    for res in sorted(slices, key=lambda r: r.key):
        if res.namespace != service.namespace:
            continue
        if res.metadata.labels.get(SERVICE_NAME_LABEL) != service.name:
            continue
        spec = res.spec
        assert isinstance(spec, EndpointSliceSpec)
        if spec.address_type == "FQDN":
            continue
        for sp in svc.ports:
            port = _slice_port(spec, sp, service)
            if port is None:
                continue
            for endpoint in spec.endpoints or []:
                if endpoint.usable:
                    yield _instance(svc, sp, endpoint.addresses[0], port, by_address)


def _instance(
    svc: MeshService, sp: ServicePort, address: str, port: int, pods: dict[str, Resource]
) -> Instance:
    pod = pods.get(address)
    if pod is None:
        return Instance(hostname=svc.hostname, service_port=sp.port, address=address, port=port)
    we = pod.spec
    assert isinstance(we, WorkloadEntrySpec)
    labels = {**pod.metadata.labels, **we.labels}
    return Instance(
        hostname=svc.hostname,
        service_port=sp.port,
        address=address,
        port=port,
        labels=tuple(sorted(labels.items())),
        locality=we.locality or "",
        weight=we.weight or 1,
        service_account=we.service_account or "",
        workload=pod.metadata.annotations.get(WORKLOAD_NAME_ANNOTATION) or pod.name,
        namespace=pod.namespace,
    )
