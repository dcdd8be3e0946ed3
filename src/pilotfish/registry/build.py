"""Derive the service registry from configuration.

Theory of operation: services come from Kubernetes ``Service`` objects
(hostname ``name.namespace.svc.<suffix>``) and from every host of a
``ServiceEntry``. Endpoints ("instances") come from WorkloadEntries selected
by a Service's selector in its own namespace or by a ServiceEntry's
``workloadSelector``, from a ServiceEntry's inline ``endpoints``, and, for a
Service without a selector, from the EndpointSlices labelled with its name
(``endpoint_slices.py``). Port
mapping follows Istio: a workload that names a port after the service port
gets that number; otherwise the service port's numeric ``targetPort`` (or the
port itself) is used. The result is plain immutable data, rebuilt per config
revision; services and endpoints are kept apart so that an endpoint-only
change can be recognised by comparing services alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.networking.service_entry import ServiceEntrySpec
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.model.hosts import fqdn, is_ip_address
from pilotfish.registry.endpoint_slices import slice_instances
from pilotfish.registry.model import WORKLOAD_NAME_ANNOTATION, Instance, MeshService, ServicePort
from pilotfish.registry.protocol import protocol_of
from pilotfish.registry.vips import allocate_vips

__all__ = ["EXPORT_TO_ANNOTATION", "Registry", "build_registry", "reselect_workloads"]


@dataclass(frozen=True)
class Registry:
    """Services by hostname and instances by (hostname, service port)."""

    services: Mapping[str, MeshService] = field(default_factory=dict)
    instances: Mapping[tuple[str, int], tuple[Instance, ...]] = field(default_factory=dict)
    # (namespace, label key, label value) -> hostnames of Kubernetes services whose
    # selector requires that label; makes "which services select this pod" cheap.
    selector_index: Mapping[tuple[str, str, str], tuple[str, ...]] = field(
        default_factory=dict, compare=False
    )

    def service(self, hostname: str) -> MeshService | None:
        return self.services.get(hostname)

    def instances_of(self, hostname: str, port: int) -> tuple[Instance, ...]:
        return self.instances.get((hostname, port), ())

    def services_selecting(self, namespace: str, labels: Mapping[str, str]) -> list[MeshService]:
        """Kubernetes services in ``namespace`` whose selector matches ``labels``."""
        candidates: set[str] = set()
        for k, v in labels.items():
            candidates.update(self.selector_index.get((namespace, k, v), ()))
        found = []
        for hostname in candidates:
            svc = self.services[hostname]
            if svc.selector and all(labels.get(k) == v for k, v in svc.selector):
                found.append(svc)
        return sorted(found, key=lambda s: s.hostname)


def _labels(d: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((d or {}).items()))


# A selected endpoint: its spec, labels and (workload, namespace); ("", "") when
# the endpoint has no workload of its own (a ServiceEntry's inline endpoint).
_Selected = tuple[WorkloadEntrySpec, dict[str, str], tuple[str, str]]


class _WorkloadIndex:
    """WorkloadEntries by namespace and label, so selecting is a set intersection
    rather than a scan of every workload for every service."""

    def __init__(self, workloads: Mapping[str, list[Resource]]) -> None:
        self._entries: dict[str, list[_Selected]] = {}
        self._by_label: dict[tuple[str, str, str], set[int]] = defaultdict(set)
        for ns, resources in workloads.items():
            entries = self._entries.setdefault(ns, [])
            for res in sorted(resources, key=lambda r: r.key):
                we = res.spec
                assert isinstance(we, WorkloadEntrySpec)
                labels = {**res.metadata.labels, **we.labels}
                for k, v in labels.items():
                    self._by_label[(ns, k, v)].add(len(entries))
                workload = res.metadata.annotations.get(WORKLOAD_NAME_ANNOTATION) or res.name
                entries.append((we, labels, (workload, res.namespace)))

    def select(self, namespace: str, selector: Mapping[str, str]) -> list[_Selected]:
        entries = self._entries.get(namespace, [])
        if not selector:
            return []
        found: set[int] | None = None
        for k, v in selector.items():
            ids = self._by_label.get((namespace, k, v), set())
            found = set(ids) if found is None else found & ids
            if not found:
                return []
        return [entries[i] for i in sorted(found or ())]


def _k8s_service(res: Resource, suffix: str) -> MeshService:
    spec = res.spec
    assert isinstance(spec, ServiceSpec)
    ports = tuple(
        ServicePort(
            name=p.name or str(p.port),
            port=p.port,
            protocol=protocol_of(p.name, p.app_protocol),
            target_port=p.target_port,
        )
        for p in spec.ports
        if p.protocol != "UDP"
    )
    addresses = tuple(
        a for a in ([spec.cluster_ip] if spec.cluster_ip else []) if a and a != "None"
    )
    return MeshService(
        hostname=f"{res.name}.{res.namespace}.svc.{suffix}",
        namespace=res.namespace,
        ports=ports,
        addresses=addresses,
        resolution="EDS",
        selector=_labels(spec.selector) if spec.selector is not None else None,
        source_kind="Service",
        source_name=res.name,
        export_to=_export_annotation(res),
    )


# Istio's annotation: a comma-separated exportTo list for a Kubernetes Service.
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def _export_annotation(res: Resource) -> tuple[str, ...]:
    raw = res.metadata.annotations.get(EXPORT_TO_ANNOTATION, "")
    return tuple(sorted({p.strip() for p in raw.split(",") if p.strip()}))


def _workload_port(we_ports: Mapping[str, int], sp: ServicePort) -> int:
    if sp.name in we_ports:
        return we_ports[sp.name]
    if isinstance(sp.target_port, int):
        return sp.target_port
    if isinstance(sp.target_port, str) and sp.target_port in we_ports:
        return we_ports[sp.target_port]
    return sp.port


def _instance(
    hostname: str,
    sp: ServicePort,
    we: WorkloadEntrySpec,
    labels: Mapping[str, str],
    owner: tuple[str, str] = ("", ""),
    default_port: int | None = None,
) -> Instance | None:
    if not we.address:
        return None
    port = _workload_port(we.ports, sp) if default_port is None else default_port
    if sp.name in we.ports:
        port = we.ports[sp.name]
    return Instance(
        hostname=hostname,
        service_port=sp.port,
        address=we.address,
        port=port,
        labels=_labels(labels),
        locality=we.locality or "",
        weight=we.weight or 1,
        service_account=we.service_account or "",
        workload=owner[0],
        namespace=owner[1],
    )


def build_registry(
    resources: Iterable[Resource],
    domain_suffix: str = "cluster.local",
    service_cidr: str | None = None,
) -> Registry:
    """Build the registry from all configuration resources (any kinds; others are ignored).

    With ``service_cidr``, Kubernetes Services without a clusterIP get a stable
    virtual IP from that range.
    """
    services: dict[str, MeshService] = {}
    instances: _Instances = defaultdict(list)
    workloads: dict[str, list[Resource]] = defaultdict(list)
    entries: list[Resource] = []
    k8s: list[Resource] = []
    slices: list[Resource] = []
    for res in resources:
        if res.kind == "WorkloadEntry":
            workloads[res.namespace].append(res)
        elif res.kind == "ServiceEntry":
            entries.append(res)
        elif res.kind == "Service":
            k8s.append(res)
        elif res.kind == "EndpointSlice":
            slices.append(res)

    index = _WorkloadIndex(workloads)
    for res in sorted(k8s, key=lambda r: r.key):
        _add_k8s_service(res, domain_suffix, index, slices, workloads, services, instances)
    for res in sorted(entries, key=lambda r: r.key):
        _add_service_entry(res, domain_suffix, index, services, instances)
    if service_cidr:
        _allocate_vips(services, service_cidr)
    selector_index: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for svc in services.values():
        for k, v in svc.selector or ():
            selector_index[(svc.namespace, k, v)].append(svc.hostname)
    return Registry(
        selector_index={key: tuple(hosts) for key, hosts in selector_index.items()},
        services=dict(sorted(services.items())),
        instances={
            k: tuple(sorted(v, key=lambda i: (i.address, i.port))) for k, v in instances.items()
        },
    )


# (hostname, service port) -> the instances behind it, as they are found.
_Instances = dict[tuple[str, int], list[Instance]]


def _add_k8s_service(
    res: Resource,
    domain_suffix: str,
    index: _WorkloadIndex,
    slices: list[Resource],
    workloads: dict[str, list[Resource]],
    services: dict[str, MeshService],
    instances: _Instances,
) -> None:
    """A Kubernetes Service: its selected workloads, or without a selector its EndpointSlices."""
    svc = _k8s_service(res, domain_suffix)
    services[svc.hostname] = svc
    if not svc.selector:
        for listed in slice_instances(res, svc, slices, workloads.get(res.namespace, [])):
            instances[(svc.hostname, listed.service_port)].append(listed)
        return
    for we, labels, owner in index.select(res.namespace, dict(svc.selector)):
        for sp in svc.ports:
            inst = _instance(svc.hostname, sp, we, labels, owner)
            if inst is not None:
                instances[(svc.hostname, sp.port)].append(inst)


def _add_service_entry(
    res: Resource,
    domain_suffix: str,
    index: _WorkloadIndex,
    services: dict[str, MeshService],
    instances: _Instances,
) -> None:
    """A ServiceEntry: one service per host, with its selected or listed endpoints."""
    se = res.spec
    assert isinstance(se, ServiceEntrySpec)
    ports = tuple(
        ServicePort(
            name=p.name,
            port=p.number,
            protocol=protocol_of(p.name, None, p.protocol),
            target_port=p.target_port,
        )
        for p in se.ports
    )
    resolution = se.resolution
    for host in se.hosts:
        hostname = fqdn(host, res.namespace, domain_suffix)
        if hostname in services and services[hostname].source_kind == "Service":
            continue  # a Kubernetes Service of the same name wins, as in Istio
        svc = MeshService(
            hostname=hostname,
            namespace=res.namespace,
            ports=ports,
            addresses=tuple(se.addresses),
            resolution="EDS" if resolution == "STATIC" else resolution,
            mesh_external=se.location == "MESH_EXTERNAL",
            selector=None,
            source_kind="ServiceEntry",
            source_name=res.name,
            export_to=tuple(sorted(set(se.export_to))),
        )
        services[hostname] = svc
        selected: list[_Selected] = []
        if se.workload_selector is not None:
            selected = index.select(res.namespace, se.workload_selector.labels)
        elif se.endpoints:
            selected = [(ep, dict(ep.labels), ("", "")) for ep in se.endpoints]
        elif resolution in ("DNS", "DNS_ROUND_ROBIN") and not is_ip_address(host):
            # No endpoints: Envoy resolves the host itself.
            selected = [(WorkloadEntrySpec(address=host), {}, ("", ""))]
        for sp in ports:
            for we, labels, owner in selected:
                default = sp.target_port if isinstance(sp.target_port, int) else sp.port
                inst = _instance(hostname, sp, we, labels, owner, default_port=default)
                if inst is not None:
                    instances[(hostname, sp.port)].append(inst)


def _allocate_vips(services: dict[str, MeshService], service_cidr: str) -> None:
    # Kubernetes Services, and ServiceEntry hosts Envoy resolves by name (as
    # Istio's DNS auto-allocation does), get a VIP so pods can dial them.
    need = [
        h
        for h, svc in services.items()
        if not svc.addresses
        and (
            svc.source_kind == "Service"
            or (svc.resolution != "NONE" and "*" not in h and not is_ip_address(h))
        )
    ]
    taken = [a for svc in services.values() for a in svc.addresses]
    for hostname, vip in allocate_vips(need, service_cidr, taken).items():
        services[hostname] = replace(services[hostname], addresses=(vip,))


def reselect_workloads(
    registry: Registry,
    changed: Iterable[Resource],
    workloads: Iterable[Resource],
    service_entries: Iterable[Resource],
) -> Registry | None:
    """``registry`` after WorkloadEntries changed, without rebuilding every service.

    ``changed`` holds the WorkloadEntries added, removed or modified (the old and
    the new object of a modified one), ``workloads`` every WorkloadEntry now, and
    ``service_entries`` every ServiceEntry (unchanged, as every Service is). Only
    the Kubernetes Services selecting a changed entry (by its old or new labels)
    get their instances recomputed, exactly as ``build_registry`` computes them.
    Returns ``registry`` itself when no instance changed, and None when the change
    reaches services this cannot follow alone (a ServiceEntry's
    ``workloadSelector`` or a selector-less Service in a changed namespace): the
    caller then builds the registry in full.
    """
    changed = tuple(changed)
    namespaces = {res.namespace for res in changed}
    for res in service_entries:
        spec = res.spec
        if res.namespace in namespaces and getattr(spec, "workload_selector", None) is not None:
            return None
    for svc in registry.services.values():
        if svc.namespace in namespaces and svc.source_kind == "Service" and not svc.selector:
            return None
    affected: dict[str, MeshService] = {}
    for res in changed:
        we = res.spec
        assert isinstance(we, WorkloadEntrySpec)
        labels = {**res.metadata.labels, **we.labels}
        for svc in registry.services_selecting(res.namespace, labels):
            affected[svc.hostname] = svc
    if not affected:
        return registry
    # Only the entries some affected service selects: the index (and its sort) stays
    # small. Selectors by (namespace, one of their labels), so that each entry is
    # checked against the selectors it can match, not against all of them (a burst
    # of changes touches many services).
    selectors: dict[tuple[str, str, str], list[tuple[tuple[str, str], ...]]] = defaultdict(list)
    for svc in affected.values():
        if svc.selector:
            key, value = svc.selector[0]
            selectors[(svc.namespace, key, value)].append(svc.selector)
    # Per namespace, the (label, value) every selector's first pair names, as label
    # -> values: an entry carrying none of them cannot be selected, and most carry
    # none (a burst of changes touches tens of services of thousands). Selectors
    # mostly share one label key (``app``), so an entry costs a lookup or two, not
    # one comparison per affected service.
    firsts: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for namespace, key, value in selectors:
        firsts[namespace][key].add(value)
    relevant: dict[str, list[Resource]] = defaultdict(list)
    for res in workloads:
        namespace = res.namespace
        wanted = firsts.get(namespace)
        if wanted is None:
            continue
        own = getattr(res.spec, "labels", None) or {}
        meta = res.metadata.labels
        if not any(own.get(k, meta.get(k)) in values for k, values in wanted.items()):
            continue
        labels = {**meta, **own}
        if any(
            all(labels.get(k) == v for k, v in selector)
            for item in labels.items()
            for selector in selectors.get((namespace, *item), ())
        ):
            relevant[namespace].append(res)
    index = _WorkloadIndex(relevant)
    found: _Instances = defaultdict(list)
    for svc in affected.values():
        for we, labels, owner in index.select(svc.namespace, dict(svc.selector or ())):
            for sp in svc.ports:
                inst = _instance(svc.hostname, sp, we, labels, owner)
                if inst is not None:
                    found[(svc.hostname, sp.port)].append(inst)
    fresh = {k: tuple(sorted(v, key=lambda i: (i.address, i.port))) for k, v in found.items()}
    before = {k: v for k, v in registry.instances.items() if k[0] in affected}
    if fresh == before:
        return registry
    instances = {k: v for k, v in registry.instances.items() if k[0] not in affected}
    instances.update(fresh)
    return Registry(
        services=registry.services, instances=instances, selector_index=registry.selector_index
    )
