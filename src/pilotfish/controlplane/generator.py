"""The control plane's ConfigGenerator: snapshot + proxy view -> serialized resources.

Theory of operation: ``generate(view)`` composes each xDS type from parts
that are translated, built into protos and serialized once, then shared:

- outbound listeners/routes/clusters, cached per ``view.outbound_key`` (every
  sidecar of a namespace shares them; gateways share the cluster part).
  Only when some VirtualService match uses ``sourceLabels`` is the key
  extended, with the proxy's values of just the label keys those selectors
  name (``translate.source_match.outbound_cache_key``): meshes without
  ``sourceLabels`` keep one outbound translation per namespace, and with them
  one per distinct combination of the selected labels;
  The applied Sidecar resource (``translate.sidecar_scope``, keyed by its
  ``namespace/name``) extends both the outbound and the cluster keys: its
  egress hosts change what a proxy sees, and proxies under one Sidecar share;
- inbound listeners/clusters (sidecars) or gateway listeners/routes, cached
  per whole view;
- endpoints, one set for every proxy; clusters with locality load balancing
  get their endpoints rewritten per ``view.endpoint_key`` (namespace,
  locality), replacing those names in the shared set (see
  ``translate.locality``).

- credential secrets (``SECRET_TYPE``): the SDS resources that the view's
  listeners and clusters name (``credentialName`` Secrets), built fresh from
  the snapshot per distinct name set. The xDS server decides per stream,
  from its verified identity, which of them it may receive.

Caches are keyed by the snapshot's ``config_generation`` (and
``endpoint_generation`` for endpoints), so an endpoint-only change reuses every
listener, route and cluster part and the ResourceSets keep their versions:
the server then pushes EDS alone. Parts of older generations are dropped
when a new snapshot arrives. The final per-view composition is cached too,
so the many streams of one view cost one generation.

Equal sets are interned by (type, version): two views whose inbound parts
come out identical (pods of different apps serving the same ports) share one
object, so their composed sets are one object too and the xDS server encodes
that response body once for all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pilotfish.ir import Cluster, ClusterLoadAssignment, Listener, RouteConfig
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.clusters import (
    fixed_clusters,
    locality_load_assignments,
    outbound_clusters,
    service_load_assignments,
    subset_labels_of,
)
from pilotfish.translate.gateway import gateway_listeners
from pilotfish.translate.security.secrets import credential_secrets, referenced_credentials
from pilotfish.translate.sidecar import sidecar_inbound, sidecar_outbound
from pilotfish.translate.sidecar_scope import SidecarScope, sidecar_scope
from pilotfish.translate.source_match import outbound_cache_key, source_label_keys
from pilotfish.xds.build import ProtoBuilder
from pilotfish.xds.build.resources import pack, resource_name
from pilotfish.xds.build.secrets import build_secret
from pilotfish.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    ResourceSet,
)

__all__ = ["MeshGenerator"]

_IrResource = Listener | RouteConfig | Cluster | ClusterLoadAssignment


class MeshGenerator:
    """Implements ``pilotfish.xds.types.ConfigGenerator`` over the latest snapshot."""

    def __init__(self, builder: ProtoBuilder | None = None) -> None:
        self._builder = builder or ProtoBuilder(maxsize=65536)
        self._snapshot = build_snapshot((), 0)
        self._outbound: dict[tuple[object, ...], dict[str, ResourceSet]] = {}
        # Label keys named by sourceLabels selectors of the current snapshot.
        self._source_label_keys: frozenset[str] = frozenset()
        self._local: dict[ProxyView, dict[str, ResourceSet]] = {}
        # Outbound clusters by (namespace, workload_certs, applied Sidecar): mesh mTLS
        # needs a certificate, and a Sidecar's egress hosts leave services out.
        self._clusters: dict[tuple[str, bool, str], ResourceSet] = {}
        self._endpoints: ResourceSet | None = None
        # Shared endpoints with locality-aware overrides, by ProxyView.endpoint_key.
        self._local_endpoints: dict[tuple[str, str], ResourceSet] = {}
        self._composed: dict[ProxyView, dict[str, ResourceSet]] = {}
        # Credential resource names used by each local / cluster part, and the
        # SDS sets built for each distinct union of them.
        self._local_credentials: dict[ProxyView, frozenset[str]] = {}
        self._cluster_credentials: dict[tuple[str, bool, str], frozenset[str]] = {}
        self._secrets: dict[frozenset[str], ResourceSet] = {}
        self._interned: dict[tuple[str, str], ResourceSet] = {}
        # hostname -> (inputs, {cluster name: packed CLA}); reused while inputs are equal.
        self._service_endpoints: dict[str, tuple[object, dict[str, bytes]]] = {}
        self.translations = 0  # how many (part) translations ran; for tests and metrics

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` current, dropping cached parts it invalidates.

        Build snapshots with the current one as ``previous`` so that their
        generations are comparable.
        """
        old = self._snapshot
        config_changed = snapshot.config_generation != old.config_generation
        if config_changed:
            self._outbound.clear()
            self._source_label_keys = source_label_keys(snapshot)
            self._local.clear()
            self._clusters.clear()
            self._interned.clear()
            self._local_credentials.clear()
            self._cluster_credentials.clear()
            self._secrets.clear()
        if config_changed:
            self._composed.clear()
        if config_changed or snapshot.endpoint_generation != old.endpoint_generation:
            # Composed results stay: ``generate`` swaps in the new EDS set.
            self._endpoints = None
            self._local_endpoints.clear()
        self._snapshot = snapshot

    # -- ConfigGenerator -------------------------------------------------------------

    def view_of(self, node_id: str, metadata: Mapping[str, Any]) -> ProxyView:
        if not node_id or "." not in node_id:
            raise ValueError(f"node id {node_id!r} must be <name>.<namespace>")
        view = ProxyView.from_node(metadata)
        if node_id.rsplit(".", 1)[1] != view.namespace:
            raise ValueError(
                f"node id {node_id!r} does not match NAMESPACE {view.namespace!r} in its metadata"
            )
        return view

    def generate(self, view: object) -> Mapping[str, ResourceSet]:
        assert isinstance(view, ProxyView)
        cached = self._composed.get(view)
        if cached is not None:
            endpoints = self._endpoints_for(view)
            if cached[ENDPOINT_TYPE] is not endpoints:
                cached = {**cached, ENDPOINT_TYPE: endpoints}
                self._composed[view] = cached
            return cached
        # The applied Sidecar resource (if any) scopes the outbound parts.
        scope = sidecar_scope(self._snapshot, view)
        out = self._outbound_parts(view, scope)
        local = self._local_parts(view)
        cluster_key = (view.namespace, view.workload_certs, scope.key)
        clusters = self._cluster_part(view.namespace, view.workload_certs, scope)
        credentials = self._local_credentials.get(view, frozenset()) | (
            self._cluster_credentials.get(cluster_key, frozenset())
        )
        empty = ResourceSet(CLUSTER_TYPE, {})
        result = {
            CLUSTER_TYPE: ResourceSet.compose(
                CLUSTER_TYPE, [clusters, local.get(CLUSTER_TYPE, empty)]
            ),
            ENDPOINT_TYPE: self._endpoints_for(view),
            LISTENER_TYPE: ResourceSet.compose(
                LISTENER_TYPE,
                [out.get(LISTENER_TYPE, empty), local.get(LISTENER_TYPE, empty)],
            ),
            ROUTE_TYPE: ResourceSet.compose(
                ROUTE_TYPE, [out.get(ROUTE_TYPE, empty), local.get(ROUTE_TYPE, empty)]
            ),
            SECRET_TYPE: self._secret_set(credentials),
        }
        for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
            if not result[type_url].resources:
                result[type_url] = ResourceSet(type_url, {})
            result[type_url] = self._intern(result[type_url])
        self._composed[view] = result
        return result

    # -- parts -----------------------------------------------------------------------

    def _intern(self, rs: ResourceSet) -> ResourceSet:
        """The first set seen with this type and version (only for config-generation
        sets: the table is emptied with them)."""
        return self._interned.setdefault((rs.type_url, rs.version), rs)

    def _set(self, type_url: str, items: Iterable[_IrResource]) -> ResourceSet:
        packed = self._builder.packed
        return ResourceSet(type_url, {resource_name(r): packed(r) for r in items})

    def _outbound_parts(self, view: ProxyView, scope: SidecarScope) -> dict[str, ResourceSet]:
        if view.role != "sidecar":
            return {}
        # Proxies under different Sidecar resources see different services.
        key = (*outbound_cache_key(view, self._source_label_keys), scope.key)
        parts = self._outbound.get(key)
        if parts is None:
            self.translations += 1
            ob = sidecar_outbound(self._snapshot, view, scope)
            parts = {
                LISTENER_TYPE: self._set(LISTENER_TYPE, ob.listeners),
                ROUTE_TYPE: self._set(ROUTE_TYPE, ob.route_configs),
            }
            self._outbound[key] = parts
        return parts

    def _cluster_part(
        self, namespace: str, workload_certs: bool, scope: SidecarScope
    ) -> ResourceSet:
        key = (namespace, workload_certs, scope.key)
        part = self._clusters.get(key)
        if part is None:
            self.translations += 1
            clusters = (
                scope.filter_clusters(
                    self._snapshot,
                    outbound_clusters(self._snapshot, namespace, workload_certs=workload_certs),
                )
                + fixed_clusters()
            )
            clusters.sort(key=lambda c: c.name)
            part = self._set(CLUSTER_TYPE, clusters)
            self._clusters[key] = part
            self._cluster_credentials[key] = referenced_credentials(clusters)
        return part

    def _local_parts(self, view: ProxyView) -> dict[str, ResourceSet]:
        parts = self._local.get(view)
        if parts is None:
            self.translations += 1
            if view.role == "sidecar":
                ib = sidecar_inbound(self._snapshot, view)
                names = referenced_credentials((*ib.listeners, *ib.clusters))
                parts = {
                    LISTENER_TYPE: self._intern(self._set(LISTENER_TYPE, ib.listeners)),
                    CLUSTER_TYPE: self._intern(self._set(CLUSTER_TYPE, ib.clusters)),
                }
            else:
                gw = gateway_listeners(self._snapshot, view)
                names = referenced_credentials(gw.listeners)
                parts = {
                    LISTENER_TYPE: self._intern(self._set(LISTENER_TYPE, gw.listeners)),
                    ROUTE_TYPE: self._intern(self._set(ROUTE_TYPE, gw.route_configs)),
                }
            self._local[view] = parts
            self._local_credentials[view] = names
        return parts

    def _secret_set(self, names: frozenset[str]) -> ResourceSet:
        """The SDS resources ``names`` designate (absent Secrets left out). Not
        built through the shared proto caches: key material is kept only as long
        as this generation's sets."""
        found = self._secrets.get(names)
        if found is None:
            secrets = credential_secrets(self._snapshot, names)
            found = ResourceSet(SECRET_TYPE, {s.name: pack(build_secret(s)) for s in secrets})
            self._secrets[names] = found
        return found

    def _endpoints_for(self, view: ProxyView) -> ResourceSet:
        """The shared endpoints, with the view's locality-aware assignments swapped in."""
        shared = self._endpoint_part()
        key = view.endpoint_key
        found = self._local_endpoints.get(key)
        if found is None:
            overrides = locality_load_assignments(self._snapshot, *key)
            if not overrides:
                found = shared
            else:
                packed = self._builder.packed
                merged = dict(shared.resources)
                merged.update({c.cluster_name: packed(c) for c in overrides})
                found = ResourceSet(ENDPOINT_TYPE, merged)
            self._local_endpoints[key] = found
        return found

    def _endpoint_part(self) -> ResourceSet:
        """Every EDS cluster's endpoints; per service, rebuilt only when its inputs changed."""
        if self._endpoints is not None:
            return self._endpoints
        snapshot = self._snapshot
        packed = self._builder.packed
        previous = self._service_endpoints
        current: dict[str, tuple[object, dict[str, bytes]]] = {}
        merged: dict[str, bytes] = {}
        for hostname, svc in snapshot.registry.services.items():
            subsets = subset_labels_of(snapshot, hostname)
            inputs = (
                svc,
                tuple(snapshot.registry.instances_of(hostname, sp.port) for sp in svc.ports),
                tuple(sorted((k, tuple(sorted(v.items()))) for k, v in subsets.items())),
            )
            entry = previous.get(hostname)
            if entry is None or entry[0] != inputs:
                claims = service_load_assignments(snapshot, svc, subsets)
                entry = (inputs, {c.cluster_name: packed(c) for c in claims})
            current[hostname] = entry
            merged.update(entry[1])
        self._service_endpoints = current
        self._endpoints = ResourceSet(ENDPOINT_TYPE, merged)
        return self._endpoints
