"""One simulated Envoy ADS stream (State of the World), cheap enough to run a thousand of.

Theory of operation: each stream behaves as an Envoy sidecar does on an ADS stream.
Its first request carries the ``node`` and subscribes to clusters (CDS, wildcard);
the second subscribes to listeners (LDS, wildcard). Every response is ACKed with
its own ``version_info`` and ``nonce``. When a CDS response names EDS clusters, the
stream first (re)subscribes EDS to exactly those names, then ACKs the CDS response,
the order Envoy uses while clusters warm; LDS responses drive RDS the same way
through the ``rds.route_config_name`` of each HTTP connection manager.

Thousands of streams receive byte-identical responses, so the names a response
references are parsed once per ``(type_url, version_info)`` in a shared
``NameCache``. That relies on the control plane's contract that a version is a
digest of the contents (see ``pilotfish.xds.types.ResourceSet``). Per stream and
type the state records what was last received and ACKed and when
(``time.monotonic()``, which on Linux is one clock for every process on the
machine, so a parent process can compare it with its own timestamps).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

__all__ = [
    "ADS_METHOD",
    "SIM_TYPES",
    "NameCache",
    "StreamState",
    "TypeState",
    "referenced_by",
    "run_stream",
    "sim_instance_ip",
    "sim_node",
]

ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
SIM_TYPES = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
# A parent type whose responses decide which names of the child type to subscribe to.
_CHILD_TYPE = {CLUSTER_TYPE: ENDPOINT_TYPE, LISTENER_TYPE: ROUTE_TYPE}
_HCM_TYPE_URL = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_NAME_CACHE_LIMIT = 256


@dataclass(slots=True)
class TypeState:
    """What one stream last received and ACKed for one resource type."""

    subscribed: tuple[str, ...] = ()
    requested: bool = False
    received_version: str = ""
    received_nonce: str = ""
    received_at: float = 0.0
    responses: int = 0
    acked_version: str = ""
    acked_nonce: str = ""
    acked_at: float = 0.0

    @property
    def up_to_date(self) -> bool:
        """The last response received has been ACKed (or nothing was received)."""
        return self.acked_nonce == self.received_nonce


@dataclass(slots=True)
class StreamState:
    """One simulated proxy: its per-type state, when it finished the initial push, errors."""

    index: int
    node_id: str
    types: dict[str, TypeState] = field(default_factory=lambda: {t: TypeState() for t in SIM_TYPES})
    connected_at: float = 0.0
    complete_at: float | None = None
    error: str | None = None
    closed: bool = False

    def is_complete(self) -> bool:
        """True once every type is ACKed; EDS/RDS also count when nothing references them."""
        cds, lds = self.types[CLUSTER_TYPE], self.types[LISTENER_TYPE]
        if not (cds.acked_version and lds.acked_version):
            return False
        for child in (ENDPOINT_TYPE, ROUTE_TYPE):
            state = self.types[child]
            if state.subscribed and not state.acked_version:
                return False
        return True


class NameCache:
    """Names a CDS/LDS response references, parsed once per ``(type_url, version_info)``."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, str, int], tuple[str, ...]] = {}
        self.parses = 0

    def referenced(self, response: discovery_pb2.DiscoveryResponse) -> tuple[str, ...]:
        """Sorted EDS cluster names (for CDS) or RDS route names (for LDS); else ``()``."""
        key = (response.type_url, response.version_info, len(response.resources))
        names = self._names.get(key)
        if names is None:
            names = _parse_referenced(response)
            self.parses += 1
            if len(self._names) >= _NAME_CACHE_LIMIT:
                del self._names[next(iter(self._names))]
            self._names[key] = names
        return names


def _parse_referenced(response: discovery_pb2.DiscoveryResponse) -> tuple[str, ...]:
    return referenced_by(response.type_url, response.resources)


def referenced_by(type_url: str, resources: Iterable[any_pb2.Any]) -> tuple[str, ...]:
    """Sorted EDS cluster names (clusters) or RDS route names (listeners) that
    ``resources`` (packed ``Any`` messages of ``type_url``) reference; else ``()``."""
    names: set[str] = set()
    if type_url == CLUSTER_TYPE:
        for packed in resources:
            cluster = cluster_pb2.Cluster.FromString(packed.value)
            if cluster.WhichOneof("cluster_discovery_type") == "type" and (
                cluster.type == cluster_pb2.Cluster.EDS
            ):
                names.add(cluster.eds_cluster_config.service_name or cluster.name)
    elif type_url == LISTENER_TYPE:
        for packed in resources:
            listener = listener_pb2.Listener.FromString(packed.value)
            chains = list(listener.filter_chains)
            if listener.HasField("default_filter_chain"):
                chains.append(listener.default_filter_chain)
            for chain in chains:
                for network_filter in chain.filters:
                    typed = network_filter.typed_config
                    if typed.type_url != _HCM_TYPE_URL:
                        continue
                    hcm = hcm_pb2.HttpConnectionManager.FromString(typed.value)
                    if hcm.WhichOneof("route_specifier") == "rds":
                        names.add(hcm.rds.route_config_name)
    return tuple(sorted(names))


def sim_instance_ip(index: int) -> str:
    """The loopback address simulated proxy ``index`` claims (never dialled)."""
    n = index + 1
    return f"127.20.{(n >> 8) & 0xFF}.{n & 0xFF}"


def sim_node(index: int, services: int, namespace: str = "default") -> base_pb2.Node:
    """The ``node`` of simulated proxy ``index``: a sidecar of ``svc-<index mod services>``."""
    app = f"svc-{index % max(services, 1)}"
    node = base_pb2.Node(
        id=f"sim-{index}.{namespace}",
        cluster=f"{app}.{namespace}",
        user_agent_name="pilotfish-ads-sim",
    )
    metadata: dict[str, Any] = {
        "ROLE": "sidecar",
        "NAMESPACE": namespace,
        "LABELS": {"app": app, "version": "v1"},
        "SERVICE_ACCOUNT": "default",
        "INSTANCE_IPS": sim_instance_ip(index),
        "INTERCEPTION_MODE": "REDIRECT",
    }
    node.metadata.update(metadata)
    return node


async def run_stream(
    channel: grpc.aio.Channel,
    state: StreamState,
    node: base_pb2.Node,
    cache: NameCache,
) -> None:
    """Run one ADS stream until the server ends it or the task is cancelled.

    Errors end the stream and are recorded in ``state.error``; nothing is retried,
    so a benchmark reports failed streams instead of hiding them.
    """
    method = channel.stream_stream(
        ADS_METHOD,
        request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )
    call = method(wait_for_ready=True)
    try:
        await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=CLUSTER_TYPE))
        state.types[CLUSTER_TYPE].requested = True
        await call.write(discovery_pb2.DiscoveryRequest(type_url=LISTENER_TYPE))
        state.types[LISTENER_TYPE].requested = True
        state.connected_at = time.monotonic()
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                state.error = state.error or "server closed the stream"
                break
            assert isinstance(response, discovery_pb2.DiscoveryResponse)
            await _on_response(call, state, response, cache)
    except grpc.aio.AioRpcError as exc:
        state.error = f"{exc.code().name}: {exc.details()}"
    except grpc.aio.UsageError as exc:  # the call was cancelled while writing
        state.error = f"stream closed: {exc}"
    finally:
        state.closed = True
        call.cancel()


async def _on_response(
    call: grpc.aio.StreamStreamCall,
    state: StreamState,
    response: discovery_pb2.DiscoveryResponse,
    cache: NameCache,
) -> None:
    type_url = response.type_url
    current = state.types.get(type_url)
    if current is None:  # a type this simulator never asked for: ACK it and move on
        current = state.types.setdefault(type_url, TypeState())
    current.received_version = response.version_info
    current.received_nonce = response.nonce
    current.received_at = time.monotonic()
    current.responses += 1

    child_type = _CHILD_TYPE.get(type_url)
    if child_type is not None:
        names = cache.referenced(response)
        child = state.types[child_type]
        if names != child.subscribed:
            # Subscribe (or re-subscribe) before ACKing the parent, as Envoy does.
            child.subscribed = names
            child.requested = True
            await call.write(
                discovery_pb2.DiscoveryRequest(
                    version_info=child.acked_version,
                    response_nonce=child.received_nonce,
                    type_url=child_type,
                    resource_names=names,
                )
            )

    await call.write(
        discovery_pb2.DiscoveryRequest(
            version_info=response.version_info,
            response_nonce=response.nonce,
            type_url=type_url,
            resource_names=current.subscribed,
        )
    )
    current.acked_version = response.version_info
    current.acked_nonce = response.nonce
    current.acked_at = time.monotonic()
    if state.complete_at is None and state.is_complete():
        state.complete_at = current.acked_at
