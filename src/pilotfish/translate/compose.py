"""One proxy's whole configuration: ``compose(snapshot, view) -> ir.ProxyConfig``.

Theory of operation. A proxy's configuration is the union of a few *parts*,
each a pure function of the snapshot and one frozen cache key
(``pilotfish.model.proxy_view``) that holds every input changing its output:

========================  ===================  ==================================
part                      key                  what
========================  ===================  ==================================
``outbound_part``         ``OutboundKey``      a sidecar's outbound listeners and
                                               routes (gateways have none)
``cluster_part``          ``ClusterKey``       outbound clusters (scoped by the
                                               applied Sidecar) + fixed clusters
``local_part``            ``ProxyView``        inbound listeners/clusters of a
                                               sidecar, or a gateway's listeners
                                               and routes
``endpoint_part``         ``EndpointKey``      every EDS load assignment, with the
                                               locality-aware ones swapped in
``secret_part``           ``SecretKey``        credential secrets the listeners
                                               and clusters above name
========================  ===================  ==================================

``part_keys`` derives the keys of a view (the only place that reads the
applied Sidecar and the ``sourceLabels`` label keys). ``compose`` calls the
parts with those keys and concatenates them; the control plane's generator
(``controlplane.generator``) calls the very same functions with the very same
keys and only adds caching, serialization and interning. So what a golden test
sees through ``compose`` is what a proxy receives, by construction
(``tests/unit/translate/test_translate_compose.py`` checks it byte for byte).

Endpoints are shared by every proxy and cheap to rebuild per service:
``service_endpoints`` is one service's share, ``endpoint_inputs`` the value it
depends on (the generator rebuilds a service only when that changed), and
``locality_endpoints`` the per-``EndpointKey`` overrides that replace shared
assignments of the same name.

A sidecar's ``local_part`` (its inbound side) never reads routing rules
(``SIDECAR_LOCAL_UNREAD``: VirtualServices and DestinationRules shape outbound
routes and clusters, and gateways' listeners). ``sidecar_local_inputs_equal``
says whether two snapshots differ only in such objects, so that the generator
can keep every sidecar's local part across a routing edit instead of
translating it again per view; likewise ``cluster_part`` of a key without a
Sidecar never reads VirtualServices (``CLUSTER_PART_UNREAD``), so those
clusters stay across a VirtualService edit.
``tests/unit/translate/test_local_inputs.py`` checks both on every golden
case: the part is the same without those kinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from pilotfish import ir
from pilotfish.model.proxy_view import ClusterKey, EndpointKey, OutboundKey, ProxyView, SecretKey
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.clusters import (
    locality_load_assignments,
    service_load_assignments,
    subset_labels_of,
)
from pilotfish.translate.gateway import backend_client_credential, gateway_listeners
from pilotfish.translate.security.secrets import credential_secrets, referenced_credentials
from pilotfish.translate.sidecar import (
    outbound_part,
    scoped_outbound_clusters,
    sidecar_inbound,
)
from pilotfish.translate.sidecar_scope import sidecar_scope
from pilotfish.translate.source_match import source_label_keys
from pilotfish.translate.telemetry import apply_telemetry, workload_telemetry
from pilotfish.translate.telemetry import resolve as resolve_telemetry
from pilotfish.translate.telemetry_collectors import collector_clusters

__all__ = [
    "CLUSTER_PART_UNREAD",
    "SIDECAR_LOCAL_UNREAD",
    "LocalParts",
    "PartKeys",
    "cluster_part",
    "compose",
    "differ_only_in",
    "endpoint_inputs",
    "endpoint_part",
    "local_part",
    "locality_endpoints",
    "outbound_part",
    "part_keys",
    "secret_key",
    "secret_part",
    "service_endpoints",
    "sidecar_local_inputs_equal",
]

cluster_part = scoped_outbound_clusters


@dataclass(frozen=True, slots=True)
class PartKeys:
    """The keys of one view's parts (``outbound`` is ``None`` for gateways)."""

    outbound: OutboundKey | None
    clusters: ClusterKey
    local: ProxyView
    endpoints: EndpointKey


@dataclass(frozen=True, slots=True)
class LocalParts:
    """What depends on the whole view: a sidecar's inbound side or a gateway's
    listeners and routes."""

    listeners: tuple[ir.Listener, ...] = ()
    route_configs: tuple[ir.RouteConfig, ...] = ()
    clusters: tuple[ir.Cluster, ...] = ()

    @property
    def credentials(self) -> frozenset[str]:
        return referenced_credentials((*self.listeners, *self.clusters))


def part_keys(
    snapshot: Snapshot, view: ProxyView, label_keys: frozenset[str] | None = None
) -> PartKeys:
    """The part keys of ``view``; ``label_keys`` is ``source_label_keys(snapshot)``
    (computed when not given; callers that compose many views pass it once)."""
    sidecar = sidecar_scope(snapshot, view).key
    outbound = None
    clusters = view.cluster_key(sidecar)
    if view.role in ("sidecar", "waypoint"):
        # A waypoint routes as an explicit-mode sidecar of its namespace does.
        keys = source_label_keys(snapshot) if label_keys is None else label_keys
        telemetry = workload_telemetry(snapshot, view.namespace, view.label_map)
        outbound = view.outbound_key(keys, sidecar, telemetry)
    else:
        client_cert = backend_client_credential(snapshot, view)
        if client_cert:
            clusters = replace(clusters, backend_client_cert=client_cert)
    return PartKeys(outbound, clusters, view, view.endpoint_key)


def local_part(snapshot: Snapshot, view: ProxyView) -> LocalParts:
    selected = workload_telemetry(snapshot, view.namespace, view.label_map)
    client = resolve_telemetry(snapshot, view.namespace, selected, "client")
    if view.role == "sidecar":
        ib = sidecar_inbound(snapshot, view)
        server = resolve_telemetry(snapshot, view.namespace, selected, "server")
        # The outbound listeners trace with ``client``, the inbound ones with
        # ``server``: both providers' collectors must be in this proxy's CDS.
        collectors = collector_clusters(snapshot, (client.tracing, server.tracing))
        return LocalParts(
            listeners=apply_telemetry(ib.listeners, client, server),
            route_configs=ib.route_configs,
            clusters=(*ib.clusters, *collectors),
        )
    gw = gateway_listeners(snapshot, view)
    # A gateway reports as the client of the services it routes to.
    return LocalParts(
        listeners=apply_telemetry(gw.listeners, client, client),
        route_configs=gw.route_configs,
        clusters=collector_clusters(snapshot, (client.tracing,)),
    )


#: Kinds a sidecar's ``local_part`` never reads (see the module docstring).
SIDECAR_LOCAL_UNREAD = frozenset({"VirtualService", "DestinationRule"})
#: Kinds ``cluster_part`` never reads for a key without a Sidecar: clusters come
#: from services and their DestinationRules, whatever routes to them. (A Sidecar's
#: egress scope does read VirtualServices: what they route to stays visible.)
CLUSTER_PART_UNREAD = frozenset({"VirtualService"})


def sidecar_local_inputs_equal(old: Snapshot, new: Snapshot) -> bool:
    """True when a sidecar's ``local_part`` is the same in ``old`` and ``new`` for
    every view: the snapshots differ at most in ``SIDECAR_LOCAL_UNREAD`` objects."""
    return differ_only_in(old, new, SIDECAR_LOCAL_UNREAD)


def differ_only_in(old: Snapshot, new: Snapshot, kinds: frozenset[str]) -> bool:
    """True when ``old`` and ``new`` differ at most in objects of ``kinds``: same
    services, mesh config, JWKS, namespace labels and objects of every other kind.

    Cheap when true: the store hands back the same objects for unchanged files, so
    the tuples compare by identity."""
    if (old.domain_suffix, old.mesh, old.jwks, old.service_cidr) != (
        new.domain_suffix,
        new.mesh,
        new.jwks,
        new.service_cidr,
    ):
        return False
    if old.namespace_label_map != new.namespace_label_map:
        return False
    if old.registry.services != new.registry.services:
        return False
    compared = (old.by_kind.keys() | new.by_kind.keys()) - kinds
    return all(old.of_kind(kind) == new.of_kind(kind) for kind in compared)


def endpoint_inputs(snapshot: Snapshot, hostname: str) -> object:
    """Everything ``service_endpoints(snapshot, hostname)`` depends on (comparable)."""
    svc = snapshot.registry.services[hostname]
    subsets = subset_labels_of(snapshot, hostname)
    return (
        svc,
        tuple(snapshot.registry.instances_of(hostname, sp.port) for sp in svc.ports),
        tuple(sorted((k, tuple(sorted(v.items()))) for k, v in subsets.items())),
    )


def service_endpoints(snapshot: Snapshot, hostname: str) -> tuple[ir.ClusterLoadAssignment, ...]:
    """The load assignments of one service's EDS clusters (shared by every proxy)."""
    svc = snapshot.registry.services[hostname]
    return tuple(service_load_assignments(snapshot, svc, subset_labels_of(snapshot, hostname)))


def locality_endpoints(
    snapshot: Snapshot, key: EndpointKey, hostnames: Iterable[str] | None = None
) -> tuple[ir.ClusterLoadAssignment, ...]:
    """Assignments that replace shared ones for proxies with ``key`` (of the services
    ``hostnames`` only, when given)."""
    return tuple(locality_load_assignments(snapshot, key.namespace, key.locality, hostnames))


def endpoint_part(snapshot: Snapshot, key: EndpointKey) -> tuple[ir.ClusterLoadAssignment, ...]:
    """Every EDS cluster's assignment as a proxy with ``key`` receives it."""
    overrides = {c.cluster_name: c for c in locality_endpoints(snapshot, key)}
    merged: dict[str, ir.ClusterLoadAssignment] = {}
    for hostname in snapshot.registry.services:
        for cla in service_endpoints(snapshot, hostname):
            merged[cla.cluster_name] = cla
    merged.update(overrides)
    return tuple(merged.values())


def secret_key(clusters: Iterable[ir.Cluster], local: LocalParts) -> SecretKey:
    """The credential names a proxy with these clusters and local parts uses."""
    return SecretKey(referenced_credentials(clusters) | local.credentials)


def secret_part(snapshot: Snapshot, key: SecretKey) -> tuple[ir.CredentialSecret, ...]:
    """The SDS resources ``key`` names (absent Secrets left out)."""
    return credential_secrets(snapshot, key.names)


def compose(snapshot: Snapshot, view: ProxyView) -> ir.ProxyConfig:
    """Everything ``view`` receives from the control plane, as IR.

    A node proxy's configuration is not of this shape: it is
    ``translate.ambient.node_proxy`` (its ``ProxyConfig`` here is empty)."""
    if view.role == "node-proxy":
        return ir.ProxyConfig()
    keys = part_keys(snapshot, view)
    out = outbound_part(snapshot, keys.outbound) if keys.outbound is not None else None
    local = local_part(snapshot, keys.local)
    clusters = cluster_part(snapshot, keys.clusters)
    return ir.ProxyConfig(
        listeners=(*(out.listeners if out else ()), *local.listeners),
        route_configs=(*(out.route_configs if out else ()), *local.route_configs),
        clusters=(*clusters, *local.clusters),
        load_assignments=endpoint_part(snapshot, keys.endpoints),
        secrets=secret_part(snapshot, secret_key(clusters, local)),
    )
