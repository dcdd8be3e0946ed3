"""Endpoints of Kubernetes Services from the API server's EndpointSlices and Pods.

Theory of operation: on Kubernetes the endpoints controller writes an
EndpointSlice for every Service (selected pods included), so, as Istio does,
a Kubernetes source reads a Service's endpoints from its slices (label
``kubernetes.io/service-name``) instead of matching pods itself; the Pod
behind an endpoint (its ``targetRef``, else the pod with that IP) gives the
instance its labels, service account and workload name.

Each endpoint gets Istio's health status:

- ``ready`` unset or true: HEALTHY, sent;
- otherwise, when the endpoint still serves and is terminating and the
  Service is labelled ``istio.io/persistent-session``: DRAINING (sent, so
  sticky sessions finish on it; Envoy gives it no new ones);
- otherwise UNHEALTHY, not sent. The slice controller sets ``ready: false``
  on every terminating endpoint (unless the Service publishes not-ready
  addresses), so a pod being deleted leaves the endpoints at once.

An address listed by two slices (as happens while the controller moves it)
counts once, with the better status. ``pod_workload_entry`` gives the same
pod as the WorkloadEntry the local runtime registers for its pods, so
``registry.build`` and ``model`` see Kubernetes pods as they see those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pilotfish.api.base import ObjectMeta
from pilotfish.api.core.endpoint_slice import SERVICE_NAME_LABEL, Endpoint, EndpointSliceSpec
from pilotfish.api.core.workloads import PodSpec
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.registry.model import WORKLOAD_NAME_ANNOTATION, Instance, MeshService, ServicePort

__all__ = [
    "PERSISTENT_SESSION_LABEL",
    "Health",
    "SliceEndpoint",
    "pod_workload_entry",
    "sent_instances",
    "slice_endpoints",
]

#: Istio's Service label that keeps terminating endpoints as DRAINING.
PERSISTENT_SESSION_LABEL = "istio.io/persistent-session"
#: Istio's pod label for a locality without node labels (``region.zone.subzone``).
LOCALITY_LABEL = "istio-locality"

Health = Literal["HEALTHY", "DRAINING", "UNHEALTHY"]
_RANK: dict[Health, int] = {"HEALTHY": 0, "DRAINING": 1, "UNHEALTHY": 2}
_TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    """One endpoint of one service port, and its health as Istio judges it."""

    instance: Instance
    health: Health

    @property
    def sent(self) -> bool:
        """Whether Istio sends it to proxies (by default: not UNHEALTHY)."""
        return self.health != "UNHEALTHY"


def slice_endpoints(
    service: Resource, svc: MeshService, slices: Iterable[Resource], pods: Iterable[Resource]
) -> list[SliceEndpoint]:
    """Every endpoint ``service`` (registered as ``svc``) has in ``slices``, sorted by
    service port, address and port."""
    by_ref: dict[tuple[str, str], Resource] = {}
    by_ip: dict[str, Resource] = {}
    for pod in pods:
        if pod.namespace != service.namespace:
            continue
        by_ref[(pod.namespace, pod.name)] = pod
        for ip in _pod_ips(pod):
            by_ip.setdefault(ip, pod)
    draining_ok = PERSISTENT_SESSION_LABEL in service.metadata.labels
    best: dict[tuple[int, str, int], SliceEndpoint] = {}
    for res in sorted(slices, key=lambda r: r.key):
        spec = res.spec
        if res.namespace != service.namespace or not isinstance(spec, EndpointSliceSpec):
            continue
        if res.metadata.labels.get(SERVICE_NAME_LABEL) != service.name:
            continue
        if spec.address_type == "FQDN":
            continue  # Istio skips them too: the name is no address to send
        for sp in svc.ports:
            port = _slice_port(spec, sp, service)
            if port is None:
                continue
            for endpoint in spec.endpoints or []:
                health = _health(endpoint, draining_ok)
                address = endpoint.addresses[0]  # the first only, as kube-proxy does
                behind = _pod_of(endpoint, service.namespace, by_ref, by_ip)
                found = SliceEndpoint(_instance(svc, sp, address, port, behind), health)
                key = (sp.port, address, port)
                if key not in best or _RANK[health] < _RANK[best[key].health]:
                    best[key] = found
    return [best[k] for k in sorted(best)]


def sent_instances(endpoints: Iterable[SliceEndpoint]) -> list[Instance]:
    """The instances proxies get: what ``registry.build`` keeps per service port."""
    return [e.instance for e in endpoints if e.sent]


def pod_workload_entry(pod: Resource) -> Resource | None:
    """The WorkloadEntry standing for a running ``pod``: None before it has an IP,
    once it is being deleted (as the slice controller marks it not ready), after
    it ended, or when it shares its node's network and so has no address of its
    own in the mesh."""
    spec = pod.spec
    if not isinstance(spec, PodSpec):
        raise TypeError(f"{pod.key} is not a Pod")
    status = _status(pod)
    ips = _pod_ips(pod)
    meta = pod.raw.get("metadata")
    deleting = isinstance(meta, Mapping) and meta.get("deletionTimestamp")
    if not ips or deleting or status.get("phase") in _TERMINAL_PHASES:
        return None
    if _extra(spec, "hostNetwork"):
        return None
    ports = {p.name: p.container_port for c in spec.containers for p in c.ports if p.name}
    entry = WorkloadEntrySpec(
        address=ips[0],
        ports=ports,
        labels=dict(pod.metadata.labels),
        locality=_locality(pod.metadata.labels),
        service_account=_service_account(spec),
    )
    meta = ObjectMeta(
        name=pod.name,
        namespace=pod.namespace,
        labels=dict(pod.metadata.labels),
        annotations={WORKLOAD_NAME_ANNOTATION: _workload_name(pod)},
    )
    return Resource("networking.istio.io/v1", "WorkloadEntry", meta, entry, pod.source)


def _health(endpoint: Endpoint, draining_ok: bool) -> Health:
    conditions = endpoint.conditions
    if conditions.ready is not False:
        return "HEALTHY"
    if draining_ok and conditions.serving is not False and conditions.terminating is True:
        return "DRAINING"
    return "UNHEALTHY"


def _slice_port(spec: EndpointSliceSpec, sp: ServicePort, service: Resource) -> int | None:
    """The slice port serving ``sp``: the one of the same name (an unnamed one for a
    Service whose port has no name)."""
    declared = {p.name or "": p.port for p in spec.ports or [] if p.port is not None}
    names = [p.name for p in getattr(service.spec, "ports", [])]
    return declared.get(sp.name if sp.name in names else "")


def _pod_of(
    endpoint: Endpoint,
    namespace: str,
    by_ref: Mapping[tuple[str, str], Resource],
    by_ip: Mapping[str, Resource],
) -> Resource | None:
    ref = endpoint.target_ref
    if ref is not None and ref.kind == "Pod" and ref.name:
        pod = by_ref.get((ref.namespace or namespace, ref.name))
        if pod is not None:
            return pod
    return by_ip.get(endpoint.addresses[0])


def _instance(
    svc: MeshService, sp: ServicePort, address: str, port: int, pod: Resource | None
) -> Instance:
    if pod is None:  # not seen yet (pods and slices arrive on different watches)
        return Instance(hostname=svc.hostname, service_port=sp.port, address=address, port=port)
    spec = pod.spec
    assert isinstance(spec, PodSpec)
    labels = pod.metadata.labels
    return Instance(
        hostname=svc.hostname,
        service_port=sp.port,
        address=address,
        port=port,
        labels=tuple(sorted(labels.items())),
        locality=_locality(labels) or "",
        service_account=_service_account(spec),
        workload=_workload_name(pod),
        namespace=pod.namespace,
    )


def _status(pod: Resource) -> Mapping[str, Any]:
    # The loader keeps ``status`` only in the raw document (it is the server's, not config).
    status = pod.raw.get("status")
    return status if isinstance(status, Mapping) else {}


def _pod_ips(pod: Resource) -> list[str]:
    status = _status(pod)
    ips = [
        str(p["ip"]) for p in status.get("podIPs") or [] if isinstance(p, Mapping) and p.get("ip")
    ]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return ips


def _extra(spec: PodSpec, name: str) -> Any:
    """A pod spec field Pilotfish does not model (kept as written)."""
    return (spec.model_extra or {}).get(name)


def _service_account(spec: PodSpec) -> str:
    # Kubernetes gives a pod without one the namespace's ``default`` account.
    return spec.service_account_name or spec.service_account or "default"


def _locality(labels: Mapping[str, str]) -> str | None:
    value = labels.get(LOCALITY_LABEL)
    return value.replace(".", "/") if value else None


def _workload_name(pod: Resource) -> str:
    """The workload a pod belongs to, as Istio names it: a ReplicaSet's owner
    Deployment (the ReplicaSet's name less its ``pod-template-hash``), else the
    controlling owner, else the pod itself."""
    meta = pod.raw.get("metadata")
    owners = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    template_hash = pod.metadata.labels.get("pod-template-hash", "")
    for owner in owners or []:
        if not isinstance(owner, Mapping) or not owner.get("controller"):
            continue
        name = str(owner.get("name", ""))
        if owner.get("kind") == "ReplicaSet" and template_hash:
            return name.removesuffix(f"-{template_hash}")
        if name:
            return name
    return pod.name
