"""Is a proxy's response set self-contained? (go-control-plane's ``Snapshot.Consistent``.)

Theory of operation: Envoy waits, warming, for every resource a listener or
cluster names over ADS: a route configuration (RDS) an HTTP connection manager
names, the load assignment (EDS) of an EDS cluster, the SDS secret a TLS
context fetches from the control plane. If the control plane's set lacks one,
the listener or cluster never becomes active and nothing says why. ``check``
reads the serialized resources a proxy is sent and lists, per kind, the names
referenced but absent. Only references fetched over ADS count: secrets served
by the agent's SDS server (``sds-grpc``: the workload certificate and root CA)
are not the control plane's to send.

``check`` is pure. ``ConsistencyChecker`` adds what the control plane needs to
run it after every generation cheaply: the references of each serialized
resource are decoded once (keyed by its bytes) and kept while some
composition still holds that resource (``age``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from google.protobuf import any_pb2

from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE

__all__ = ["ConsistencyChecker", "References", "Violation", "check", "references_of"]

# (listeners, clusters) pairs whose wanted names are kept: views share their sets.
_WANTED_ENTRIES = 256

_HCM = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_DOWNSTREAM_TLS = "type.googleapis.com/" + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name
_UPSTREAM_TLS = "type.googleapis.com/" + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name


@dataclass(frozen=True, slots=True)
class Violation:
    """Resources of ``kind`` (an xDS type URL) that the set names but lacks."""

    kind: str
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class References:
    """What one resource fetches over ADS, by type URL."""

    by_type: tuple[tuple[str, frozenset[str]], ...] = ()


# A cached pair of listener and cluster mappings and the names they fetch.
_WantedEntry = tuple[Mapping[str, bytes], Mapping[str, bytes], dict[str, frozenset[str]]]


def _is_ads(source: config_source_pb2.ConfigSource) -> bool:
    return bool(source.WhichOneof("config_source_specifier") == "ads")


def _sds_names(common: common_pb2.CommonTlsContext) -> Iterator[str]:
    configs: list[secret_pb2.SdsSecretConfig] = list(common.tls_certificate_sds_secret_configs)
    if common.HasField("validation_context_sds_secret_config"):
        configs.append(common.validation_context_sds_secret_config)
    if common.HasField("combined_validation_context"):
        combined = common.combined_validation_context
        if combined.HasField("validation_context_sds_secret_config"):
            configs.append(combined.validation_context_sds_secret_config)
    for config in configs:
        if _is_ads(config.sds_config):
            yield config.name


def _socket_secrets(socket: base_pb2.TransportSocket) -> Iterator[str]:
    typed = socket.typed_config
    if typed.type_url == _DOWNSTREAM_TLS:
        down = tls_pb2.DownstreamTlsContext.FromString(typed.value)
        yield from _sds_names(down.common_tls_context)
    elif typed.type_url == _UPSTREAM_TLS:
        up = tls_pb2.UpstreamTlsContext.FromString(typed.value)
        yield from _sds_names(up.common_tls_context)


def _listener_refs(listener: listener_pb2.Listener) -> References:
    routes: set[str] = set()
    secrets: set[str] = set()
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        if chain.HasField("transport_socket"):
            secrets.update(_socket_secrets(chain.transport_socket))
        for flt in chain.filters:
            if flt.typed_config.type_url != _HCM:
                continue
            hcm = hcm_pb2.HttpConnectionManager.FromString(flt.typed_config.value)
            if hcm.HasField("rds") and _is_ads(hcm.rds.config_source):
                routes.add(hcm.rds.route_config_name)
    return References(((ROUTE_TYPE, frozenset(routes)), (SECRET_TYPE, frozenset(secrets))))


def _cluster_refs(cluster: cluster_pb2.Cluster) -> References:
    endpoints: set[str] = set()
    if cluster.type == cluster_pb2.Cluster.EDS and _is_ads(cluster.eds_cluster_config.eds_config):
        endpoints.add(cluster.eds_cluster_config.service_name or cluster.name)
    secrets: set[str] = set()
    sockets = [m.transport_socket for m in cluster.transport_socket_matches]
    if cluster.HasField("transport_socket"):
        sockets.append(cluster.transport_socket)
    for socket in sockets:
        secrets.update(_socket_secrets(socket))
    return References(((ENDPOINT_TYPE, frozenset(endpoints)), (SECRET_TYPE, frozenset(secrets))))


def references_of(type_url: str, packed: bytes) -> References:
    """What the serialized ``Any`` of a resource of ``type_url`` fetches over ADS
    (only listeners and clusters reference other resources)."""
    if type_url not in (LISTENER_TYPE, CLUSTER_TYPE):
        return References()
    value = any_pb2.Any.FromString(packed).value
    if type_url == LISTENER_TYPE:
        return _listener_refs(listener_pb2.Listener.FromString(value))
    return _cluster_refs(cluster_pb2.Cluster.FromString(value))


def _violations(
    resources: Mapping[str, Mapping[str, bytes]], refs: Iterable[References]
) -> tuple[Violation, ...]:
    return _missing(resources, _wanted(refs))


def _wanted(refs: Iterable[References]) -> dict[str, frozenset[str]]:
    """Per type URL, every name the references fetch."""
    wanted: dict[str, set[str]] = {}
    for ref in refs:
        for type_url, names in ref.by_type:
            wanted.setdefault(type_url, set()).update(names)
    return {type_url: frozenset(names) for type_url, names in wanted.items()}


def _missing(
    resources: Mapping[str, Mapping[str, bytes]], wanted: Mapping[str, frozenset[str]]
) -> tuple[Violation, ...]:
    out = []
    for type_url in sorted(wanted):
        present = resources.get(type_url, {})
        missing = sorted(n for n in wanted[type_url] if n not in present)
        if missing:
            out.append(Violation(type_url, tuple(missing)))
    return tuple(out)


def check(resources: Mapping[str, Mapping[str, bytes]]) -> tuple[Violation, ...]:
    """Every RDS, EDS and (ADS) SDS name the listeners and clusters of ``resources``
    (type URL -> name -> serialized ``Any``) reference but that is not among them."""
    refs = [
        references_of(type_url, packed)
        for type_url in (LISTENER_TYPE, CLUSTER_TYPE)
        for packed in resources.get(type_url, {}).values()
    ]
    return _violations(resources, refs)


class ConsistencyChecker:
    """``check`` with each resource's references decoded once, kept across changes.

    References are keyed by the resource's bytes, so they stay right however
    the configuration changes. ``age()``, called on every configuration
    change, starts a new generation: an entry looked up since survives, one
    not looked up during a whole generation is dropped. A routing edit leaves
    a thousand clusters byte for byte the same, and decoding them all again
    was most of the time an edit took to check (0.15 s of 0.35 s at 1000
    services); memory stays bounded by what two generations use.

    What a pair of listener and cluster mappings fetches is kept too, by the
    mappings' identity: an endpoint change keeps both, and checking it is
    then only looking the wanted names up in the new sets.
    """

    def __init__(self) -> None:
        self._refs: dict[tuple[str, bytes], References] = {}
        self._older: dict[tuple[str, bytes], References] = {}
        # What a (listeners, clusters) pair of mappings fetches, by their identity:
        # an endpoint change leaves both the same objects, and only the presence of
        # the wanted names in the new EDS set is checked again.
        self._wanted: OrderedDict[tuple[int, int], _WantedEntry] = OrderedDict()
        self.decoded = 0  # resources decoded so far; for tests

    def __len__(self) -> int:
        return len(self._refs) + len(self._older)

    def check(self, resources: Mapping[str, Mapping[str, bytes]]) -> tuple[Violation, ...]:
        listeners = resources.get(LISTENER_TYPE, {})
        clusters = resources.get(CLUSTER_TYPE, {})
        key = (id(listeners), id(clusters))
        entry = self._wanted.get(key)
        if entry is not None and entry[0] is listeners and entry[1] is clusters:
            self._wanted.move_to_end(key)
            return _missing(resources, entry[2])
        wanted = _wanted(
            self._refs_of(LISTENER_TYPE, listeners) + self._refs_of(CLUSTER_TYPE, clusters)
        )
        # The entry holds both mappings, so their ids are not reused while cached.
        self._wanted[key] = (listeners, clusters, wanted)
        if len(self._wanted) > _WANTED_ENTRIES:
            self._wanted.popitem(last=False)
        return _missing(resources, wanted)

    def _refs_of(self, type_url: str, packed_by_name: Mapping[str, bytes]) -> list[References]:
        refs = []
        cache, older = self._refs, self._older
        for packed in packed_by_name.values():
            key = (type_url, packed)
            found = cache.get(key)
            if found is None:
                found = older.pop(key, None)
                if found is None:
                    found = references_of(type_url, packed)
                    self.decoded += 1
                cache[key] = found
            refs.append(found)
        return refs

    def age(self) -> None:
        """Start a new generation: what the last one did not look up goes."""
        self._older = self._refs
        self._refs = {}
        self._wanted.clear()

    def clear(self) -> None:
        self._refs.clear()
        self._older.clear()
        self._wanted.clear()
