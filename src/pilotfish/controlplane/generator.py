"""The control plane's ConfigGenerator: snapshot + proxy view -> serialized resources.

Theory of operation: what a proxy gets is defined by
``pilotfish.translate.compose`` (its parts, and the cache key of each); this
class calls the same part functions with the same keys
(``compose.part_keys``) and only caches, serializes and shares their results:

- outbound listeners/routes by ``OutboundKey`` (every sidecar of a namespace
  shares them, unless ``sourceLabels`` selectors or a Sidecar split them);
- outbound clusters by ``ClusterKey`` (gateways share them with sidecars);
  those of keys without a Sidecar stay across a VirtualService edit
  (``compose.CLUSTER_PART_UNREAD``);
- inbound listeners/clusters (sidecars) or gateway listeners/routes by the
  whole view. A sidecar's stay across a config change its inbound side cannot
  see (``compose.sidecar_local_inputs_equal``: only VirtualServices or
  DestinationRules differ), so a routing edit re-translates the shared outbound
  part once and no per-view part (gateways' and waypoints' local parts read
  routing rules and are dropped);
- endpoints, one set for every proxy, rebuilt per service only when that
  service's ``compose.endpoint_inputs`` changed; clusters with locality load
  balancing get their assignments replaced per ``EndpointKey``;
- credential secrets (``SECRET_TYPE``) by ``SecretKey``, the SDS names the
  view's listeners and clusters use, built fresh from the snapshot. The xDS
  server decides per stream, from its verified identity, which it may receive.

Caches are keyed by the snapshot's ``config_generation`` (and
``endpoint_generation`` for endpoints; sidecar local parts as said above), so
an endpoint-only change reuses every listener, route and cluster part and the
ResourceSets keep their versions: the server then pushes EDS alone. Parts of
older generations are dropped when a new snapshot arrives. The final per-view
composition is cached too, so the many streams of one view cost one
generation. Each new composition is checked for consistency
(``pilotfish.xds.consistency``); violations are kept for ``/debug/syncz`` and
counted, never raised.

A waypoint (``role: waypoint``) is composed as an explicit-mode sidecar of its
namespace, plus its HBONE listener and the cluster behind it
(``xds.build.waypoint``).

A node proxy (``role: node-proxy``) is generated apart: its configuration is
``translate.ambient.node_proxy`` of its ``NodeKey`` (the host's ambient pods
and every service's endpoints, both registrations, so endpoint changes reach
it), cached by that key for the config generation.

Equal sets are interned by (type, version): two views whose inbound parts
come out identical (pods of different apps serving the same ports) share one
object, so their composed sets are one object too and the xDS server encodes
that response body once for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pilotfish.ir import Cluster, ClusterLoadAssignment, Listener, RouteConfig
from pilotfish.model.proxy_view import ClusterKey, EndpointKey, OutboundKey, ProxyView, SecretKey
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate import compose
from pilotfish.translate.ambient.node_proxy import NodeKey, node_key, node_proxy_config
from pilotfish.translate.ambient.waypoints import Waypoint, served_by, waypoint_policies
from pilotfish.translate.compose import CLUSTER_PART_UNREAD
from pilotfish.translate.gateway_api.index import GATEWAY_NAME_LABEL
from pilotfish.translate.names import HTTP_PROXY_ROUTE
from pilotfish.translate.source_match import source_label_keys
from pilotfish.xds.build import ProtoBuilder
from pilotfish.xds.build.node_proxy import build_node_proxy
from pilotfish.xds.build.resources import pack, resource_name
from pilotfish.xds.build.secrets import build_secret
from pilotfish.xds.build.waypoint import HTTP_LISTENER, build_waypoint, internalize
from pilotfish.xds.consistency import ConsistencyChecker, Violation
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

_log = logging.getLogger(__name__)


class MeshGenerator:
    """Implements ``pilotfish.xds.types.ConfigGenerator`` over the latest snapshot."""

    def __init__(self, builder: ProtoBuilder | None = None) -> None:
        self._builder = builder or ProtoBuilder(maxsize=65536)
        self._snapshot = self._initial = build_snapshot((), 0)
        # Label keys named by sourceLabels selectors of the current snapshot.
        self._source_label_keys: frozenset[str] = frozenset()
        self._outbound: dict[OutboundKey, dict[str, ResourceSet]] = {}
        self._clusters: dict[ClusterKey, tuple[ResourceSet, frozenset[str]]] = {}
        self._local: dict[ProxyView, tuple[dict[str, ResourceSet], frozenset[str]]] = {}
        self._secrets: dict[SecretKey, ResourceSet] = {}
        self._endpoints: ResourceSet | None = None
        # The shared endpoints with locality-aware overrides, per EndpointKey.
        self._local_endpoints: dict[EndpointKey, ResourceSet] = {}
        self._composed: dict[ProxyView, dict[str, ResourceSet]] = {}
        self._node_proxies: dict[NodeKey, dict[str, ResourceSet]] = {}
        self._interned: dict[tuple[str, str], ResourceSet] = {}
        # hostname -> (inputs, {cluster name: packed CLA}); reused while inputs are equal.
        self._service_endpoints: dict[str, tuple[object, dict[str, bytes]]] = {}
        # After endpoint-only changes: the services whose instances changed since
        # the endpoint sets were last built (None: compare every service's inputs).
        self._dirty_hosts: frozenset[str] | None = None
        # The last shared endpoint set built, and per EndpointKey its locality-aware
        # overrides (cluster name -> packed CLA) with the services whose instances
        # changed since they were built: kept across endpoint-only changes.
        self._last_endpoints: ResourceSet | None = None
        self._overrides: dict[EndpointKey, tuple[dict[str, bytes], frozenset[str]]] = {}
        self._checker = ConsistencyChecker()
        # Findings by the composed sets' versions: views sharing sets are checked once.
        self._checked: dict[tuple[tuple[str, str], ...], tuple[Violation, ...]] = {}
        self._violations: dict[ProxyView, tuple[Violation, ...]] = {}
        self.translations = 0  # how many (part) translations ran; for tests and metrics
        # Sidecar local parts kept across config changes (``_keep_sidecar_local``).
        self.local_parts_kept = 0
        self.inconsistent = 0  # compositions found inconsistent; for metrics

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` current, dropping cached parts it invalidates.

        Build snapshots with the current one as ``previous`` so that their
        generations are comparable.
        """
        old = self._snapshot
        # The first snapshot counts as a change whatever its generation: one built
        # without ``previous`` has generation 0, like the empty initial one.
        config_changed = old is self._initial or (
            snapshot.config_generation != old.config_generation
        )
        if config_changed:
            self._outbound.clear()
            self._source_label_keys = source_label_keys(snapshot)
            comparable = old is not self._initial
            if comparable and compose.differ_only_in(old, snapshot, CLUSTER_PART_UNREAD):
                # A VirtualService edit: only a Sidecar's egress scope reads them.
                for scoped in [k for k in self._clusters if k.sidecar]:
                    del self._clusters[scoped]
            else:
                self._clusters.clear()
            self._interned.clear()
            self._keep_sidecar_local(comparable, old, snapshot)
            self._secrets.clear()
            self._composed.clear()
            self._node_proxies.clear()
            # Unchanged resources keep their decoded references (``age``).
            self._checker.age()
            # Every connected view is generated again for the new configuration.
            self._violations.clear()
            self._dirty_hosts = None
            self._overrides.clear()
        elif snapshot.endpoint_generation != old.endpoint_generation:
            # Same services and rules: only services whose instances changed get
            # new load assignments (``_endpoint_part``, ``_endpoints_for``).
            changed = _changed_hosts(old, snapshot)
            dirty = self._dirty_hosts
            self._dirty_hosts = None if dirty is None else dirty | changed
            for key, (overrides, stale) in self._overrides.items():
                self._overrides[key] = (overrides, stale | changed)
        if config_changed or snapshot.endpoint_generation != old.endpoint_generation:
            # Composed results stay: ``generate`` swaps in the new EDS set.
            self._checked.clear()
            self._endpoints = None
            self._local_endpoints.clear()
        self._snapshot = snapshot

    def _keep_sidecar_local(self, comparable: bool, old: Snapshot, new: Snapshot) -> None:
        """Drop the local parts ``new`` invalidates: all of them, unless the change
        is one a sidecar's inbound side cannot see (a routing edit,
        ``compose.sidecar_local_inputs_equal``); then the sidecars' stay, interned
        again, and only gateways' and waypoints' (which route) are dropped."""
        if not comparable or not compose.sidecar_local_inputs_equal(old, new):
            self._local.clear()
            return
        for view in [v for v in self._local if v.role != "sidecar"]:
            del self._local[view]
        for parts, _ in self._local.values():
            for rs in parts.values():
                self._intern(rs)
        self.local_parts_kept += len(self._local)

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
        if view.role == "node-proxy":
            return self._node_proxy(view)
        cached = self._composed.get(view)
        if cached is not None:
            endpoints = self._endpoints_for(view.endpoint_key)
            if cached[ENDPOINT_TYPE] is not endpoints:
                cached = {**cached, ENDPOINT_TYPE: endpoints}
                self._composed[view] = cached
                self._check(view, cached)
            return cached
        keys = compose.part_keys(self._snapshot, view, self._source_label_keys)
        empty = ResourceSet(CLUSTER_TYPE, {})
        out = self._outbound_part(keys.outbound) if keys.outbound is not None else {}
        local, local_names = self._local_part(keys.local)
        clusters, cluster_names = self._cluster_part(keys.clusters)
        result = {
            CLUSTER_TYPE: ResourceSet.compose(
                CLUSTER_TYPE, [clusters, local.get(CLUSTER_TYPE, empty)]
            ),
            ENDPOINT_TYPE: self._endpoints_for(keys.endpoints),
            LISTENER_TYPE: ResourceSet.compose(
                LISTENER_TYPE,
                [out.get(LISTENER_TYPE, empty), local.get(LISTENER_TYPE, empty)],
            ),
            ROUTE_TYPE: ResourceSet.compose(
                ROUTE_TYPE, [out.get(ROUTE_TYPE, empty), local.get(ROUTE_TYPE, empty)]
            ),
            SECRET_TYPE: self._secret_part(SecretKey(cluster_names | local_names)),
        }
        if view.role == "waypoint":
            result = self._with_hbone(view, result)
        for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
            if not result[type_url].resources:
                result[type_url] = ResourceSet(type_url, {})
            result[type_url] = self._intern(result[type_url])
        self._composed[view] = result
        self._check(view, result)
        return result

    def _with_hbone(
        self, view: ProxyView, result: dict[str, ResourceSet]
    ) -> dict[str, ResourceSet]:
        """A waypoint's sets plus its HBONE listener and the cluster behind it
        (``xds.build.waypoint``): the services it serves are those naming it."""
        waypoint = Waypoint(
            view.namespace, view.label_map.get(GATEWAY_NAME_LABEL) or view.service_account
        )
        served = served_by(self._snapshot, waypoint)
        listener, to_http = build_waypoint(served)
        listeners = dict(result[LISTENER_TYPE].resources)
        routes = dict(result[ROUTE_TYPE].resources)
        http = listeners.pop(f"{view.bind_ip}_{view.outbound_port}", None)
        if http is not None and HTTP_PROXY_ROUTE in routes:
            policies = waypoint_policies(self._snapshot, waypoint, served)
            internal, routes[HTTP_PROXY_ROUTE] = internalize(
                http, routes[HTTP_PROXY_ROUTE], policies
            )
            listeners[HTTP_LISTENER] = internal
        listeners[listener.name] = pack(listener)
        clusters = {**result[CLUSTER_TYPE].resources, to_http.name: pack(to_http)}
        return {
            **result,
            LISTENER_TYPE: ResourceSet(LISTENER_TYPE, listeners),
            ROUTE_TYPE: ResourceSet(ROUTE_TYPE, routes),
            CLUSTER_TYPE: ResourceSet(CLUSTER_TYPE, clusters),
        }

    def _node_proxy(self, view: ProxyView) -> Mapping[str, ResourceSet]:
        """A node proxy's sets, by its ``NodeKey`` (see the module docstring)."""
        key = node_key(self._snapshot, view.node)
        found = self._node_proxies.get(key)
        if found is None:
            self.translations += 1
            listeners, clusters = build_node_proxy(node_proxy_config(self._snapshot, key))
            found = {
                CLUSTER_TYPE: ResourceSet(CLUSTER_TYPE, {c.name: pack(c) for c in clusters}),
                ENDPOINT_TYPE: ResourceSet(ENDPOINT_TYPE, {}),
                LISTENER_TYPE: ResourceSet(LISTENER_TYPE, {li.name: pack(li) for li in listeners}),
                ROUTE_TYPE: ResourceSet(ROUTE_TYPE, {}),
                SECRET_TYPE: ResourceSet(SECRET_TYPE, {}),
            }
            # Only the newest key per node stays: older ones are never asked again.
            for old in [k for k in self._node_proxies if k.node == key.node]:
                del self._node_proxies[old]
            self._node_proxies[key] = found
        return found

    # -- consistency -----------------------------------------------------------------

    def _check(self, view: ProxyView, result: Mapping[str, ResourceSet]) -> None:
        """Record (and log, once per new finding) what ``result`` names but lacks."""
        versions = tuple((t, rs.version) for t, rs in result.items())
        found = self._checked.get(versions)
        if found is None:
            found = self._checker.check({t: rs.resources for t, rs in result.items()})
            self._checked[versions] = found
        if not found:
            self._violations.pop(view, None)
            return
        if self._violations.get(view) != found:
            self.inconsistent += 1
            for v in found:
                _log.warning(
                    "inconsistent config for %s proxies of %s with labels %s: %s missing %s",
                    view.role,
                    view.namespace,
                    dict(view.labels),
                    v.kind.rsplit(".", 1)[-1],
                    ", ".join(v.missing),
                )
        self._violations[view] = found

    def violations(self, view: ProxyView) -> tuple[Violation, ...]:
        """The consistency violations of ``view``'s last composition (empty: none)."""
        return self._violations.get(view, ())

    def inconsistent_count(self) -> int:
        """How many compositions were found inconsistent (a Prometheus counter)."""
        return self.inconsistent

    def consistency_report(self, view: object) -> list[dict[str, object]]:
        """``violations(view)`` as plain data (for ``/debug/syncz``)."""
        if not isinstance(view, ProxyView):
            return []
        return [{"kind": v.kind, "missing": list(v.missing)} for v in self.violations(view)]

    # -- parts -----------------------------------------------------------------------

    def _intern(self, rs: ResourceSet) -> ResourceSet:
        """The first set seen with this type and version (only for config-generation
        sets: the table is emptied with them)."""
        return self._interned.setdefault((rs.type_url, rs.version), rs)

    def _set(self, type_url: str, items: Iterable[_IrResource]) -> ResourceSet:
        packed = self._builder.packed
        return ResourceSet(type_url, {resource_name(r): packed(r) for r in items})

    def _outbound_part(self, key: OutboundKey) -> dict[str, ResourceSet]:
        parts = self._outbound.get(key)
        if parts is None:
            self.translations += 1
            ob = compose.outbound_part(self._snapshot, key)
            parts = {
                LISTENER_TYPE: self._set(LISTENER_TYPE, ob.listeners),
                ROUTE_TYPE: self._set(ROUTE_TYPE, ob.route_configs),
            }
            self._outbound[key] = parts
        return parts

    def _cluster_part(self, key: ClusterKey) -> tuple[ResourceSet, frozenset[str]]:
        found = self._clusters.get(key)
        if found is None:
            self.translations += 1
            clusters = compose.cluster_part(self._snapshot, key)
            found = (
                self._set(CLUSTER_TYPE, clusters),
                compose.secret_key(clusters, compose.LocalParts()).names,
            )
            self._clusters[key] = found
        return found

    def _local_part(self, view: ProxyView) -> tuple[dict[str, ResourceSet], frozenset[str]]:
        found = self._local.get(view)
        if found is None:
            self.translations += 1
            local = compose.local_part(self._snapshot, view)
            parts = {
                LISTENER_TYPE: self._intern(self._set(LISTENER_TYPE, local.listeners)),
                CLUSTER_TYPE: self._intern(self._set(CLUSTER_TYPE, local.clusters)),
                ROUTE_TYPE: self._intern(self._set(ROUTE_TYPE, local.route_configs)),
            }
            found = (parts, local.credentials)
            self._local[view] = found
        return found

    def _secret_part(self, key: SecretKey) -> ResourceSet:
        """Not built through the shared proto caches: key material is kept only as
        long as this generation's sets."""
        found = self._secrets.get(key)
        if found is None:
            secrets = compose.secret_part(self._snapshot, key)
            found = ResourceSet(SECRET_TYPE, {s.name: pack(build_secret(s)) for s in secrets})
            self._secrets[key] = found
        return found

    def _endpoints_for(self, key: EndpointKey) -> ResourceSet:
        """The shared endpoints, with ``key``'s locality-aware assignments swapped in."""
        shared = self._endpoint_part()
        found = self._local_endpoints.get(key)
        if found is None:
            overrides = self._locality_overrides(key)
            if not overrides:
                found = shared
            else:
                found = ResourceSet(ENDPOINT_TYPE, {**shared.resources, **overrides})
            self._local_endpoints[key] = found
        return found

    def _locality_overrides(self, key: EndpointKey) -> dict[str, bytes]:
        """``key``'s locality-aware assignments; after endpoint-only changes only
        those of the services that changed since they were built are rebuilt."""
        previous = self._overrides.get(key)
        if previous is None:
            built = compose.locality_endpoints(self._snapshot, key)
            kept: dict[str, bytes] = {}
        else:
            overrides, stale = previous
            built = compose.locality_endpoints(self._snapshot, key, stale)
            # Cluster names end in ``|<hostname>``.
            suffixes = tuple(f"|{host}" for host in stale)
            kept = {n: b for n, b in overrides.items() if not n.endswith(suffixes)}
        packed = self._builder.packed
        kept.update({c.cluster_name: packed(c) for c in built})
        self._overrides[key] = (kept, frozenset())
        return kept

    def _endpoint_part(self) -> ResourceSet:
        """Every EDS cluster's endpoints; per service, rebuilt only when its inputs
        changed, and after endpoint-only changes only the services that changed
        are even looked at."""
        if self._endpoints is not None:
            return self._endpoints
        snapshot = self._snapshot
        dirty, last = self._dirty_hosts, self._last_endpoints
        if dirty is not None and last is not None:
            merged = dict(last.resources)
            for hostname in sorted(dirty):
                gone = self._service_endpoints.pop(hostname, None)
                for name in gone[1] if gone is not None else ():
                    merged.pop(name, None)
                if hostname in snapshot.registry.services:
                    entry = self._service_entry(hostname, None)
                    self._service_endpoints[hostname] = entry
                    merged.update(entry[1])
        else:
            previous = self._service_endpoints
            current: dict[str, tuple[object, dict[str, bytes]]] = {}
            merged = {}
            for hostname in snapshot.registry.services:
                entry = self._service_entry(hostname, previous.get(hostname))
                current[hostname] = entry
                merged.update(entry[1])
            self._service_endpoints = current
        self._dirty_hosts = frozenset()
        self._endpoints = self._last_endpoints = ResourceSet(ENDPOINT_TYPE, merged)
        return self._endpoints

    def _service_entry(
        self, hostname: str, entry: tuple[object, dict[str, bytes]] | None
    ) -> tuple[object, dict[str, bytes]]:
        """One service's (inputs, packed load assignments); ``entry`` if its inputs held."""
        snapshot = self._snapshot
        inputs = compose.endpoint_inputs(snapshot, hostname)
        if entry is not None and entry[0] == inputs:
            return entry
        packed = self._builder.packed
        claims = compose.service_endpoints(snapshot, hostname)
        return (inputs, {c.cluster_name: packed(c) for c in claims})


def _changed_hosts(old: Snapshot, new: Snapshot) -> frozenset[str]:
    """Services whose instances differ between two snapshots with the same services."""
    before, after = old.registry.instances, new.registry.instances
    changed = {key[0] for key, instances in after.items() if before.get(key) != instances}
    changed.update(key[0] for key in before if key not in after)
    return frozenset(changed)
