"""One simulated Envoy on an incremental (delta) ADS stream.

Theory of operation: the delta counterpart of ``bench.ads_stream``, with the same
``StreamState`` bookkeeping so ``bench.ads_sim`` measures both alike. The first
request carries the ``node`` and subscribes to clusters (CDS, wildcard), the
second to listeners (LDS, wildcard). A delta response carries only added or
changed resources and names removed ones, so the stream keeps, per parent type
(CDS, LDS), which child names (EDS load assignments, RDS route configurations)
each resource it holds references, and after every parent response subscribes
the child names that appeared and unsubscribes those that vanished, before
ACKing the parent, as Envoy does while clusters warm. Every response is ACKed
by its nonce; its ``system_version_info`` is what ``StreamState`` records as the
version received and ACKed.

Thousands of streams receive byte-identical responses. What a resource
references is parsed once per ``(type_url, name, version)`` (a version is a
digest of the resource's bytes), and a stream's first response of a type, the
same for every stream with the same view, is turned into a reference table
once and shared by those streams until one of them receives a change.

So that the simulator's own cost does not crowd out the control plane on a
small machine, responses are read with a lighter message of the same wire
shape (``SimDeltaResponse``): the header fields as in
``DeltaDiscoveryResponse``, each ``Resource`` entry kept as its bytes. An entry
is parsed only when a parent response's references must be read (a table
not seen before, or a change); EDS and RDS entries are never parsed, which
is where most of the bytes are. Everything a stream ACKs and measures comes
from the header fields, as it would for Envoy.

VHDS, as Envoy 1.40 does it: a route configuration that names ``vhds`` makes
the stream subscribe to ``VirtualHost`` resources once, naming nothing, before
it ACKs that RDS response; the stream's initial push is complete only when that
subscription is ACKed too. Whether an RDS response names ``vhds`` is read once
per response nonce (nonces derive from content, so every stream shares it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from bench.ads_stream import StreamState, TypeState, referenced_by
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, VHDS_TYPE

__all__ = ["DELTA_ADS_METHOD", "AckObserver", "DeltaNameCache", "run_delta_stream"]

DELTA_ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
_CHILD_TYPE = {CLUSTER_TYPE: ENDPOINT_TYPE, LISTENER_TYPE: ROUTE_TYPE}
_CACHE_LIMIT = 200_000
_WHOLE_LIMIT = 256

Refs = dict[str, tuple[str, ...]]
# Told of every response once it is ACKed: (stream, response, monotonic ACK time);
# the response is a ``SimDeltaResponse`` (its resources are serialized entries).
AckObserver = Callable[[StreamState, Any, float], None]


def _light_response_class() -> Any:
    """``DeltaDiscoveryResponse``'s header fields with field 2 (``resources``) as
    bytes: the same wire format, read without building a message per resource."""
    file = descriptor_pb2.FileDescriptorProto(
        name="pilotfish_bench_sim_delta.proto", package="pilotfish.bench", syntax="proto3"
    )
    message = file.message_type.add(name="SimDeltaResponse")
    field = descriptor_pb2.FieldDescriptorProto
    for name, number, kind, label in (
        ("system_version_info", 1, field.TYPE_STRING, field.LABEL_OPTIONAL),
        ("resources", 2, field.TYPE_BYTES, field.LABEL_REPEATED),
        ("type_url", 4, field.TYPE_STRING, field.LABEL_OPTIONAL),
        ("nonce", 5, field.TYPE_STRING, field.LABEL_OPTIONAL),
        ("removed_resources", 6, field.TYPE_STRING, field.LABEL_REPEATED),
    ):
        message.field.add(name=name, number=number, type=kind, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("pilotfish.bench.SimDeltaResponse")
    )


SimDeltaResponse = _light_response_class()


def _entries(response: Any) -> list[discovery_pb2.Resource]:
    """The ``Resource`` entries of a ``SimDeltaResponse``, parsed now."""
    return [discovery_pb2.Resource.FromString(raw) for raw in response.resources]


class DeltaNameCache:
    """What resources reference, shared by every simulated stream."""

    def __init__(self) -> None:
        self._by_resource: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._whole: dict[tuple[str, str, int], tuple[Refs, tuple[str, ...]]] = {}
        self.parses = 0
        self._vhds: dict[str, bool] = {}

    def names_vhds(self, response: Any) -> bool:
        """Whether a route configuration of this RDS response names ``vhds``."""
        found = self._vhds.get(response.nonce)
        if found is None:
            found = False
            for entry in _entries(response):
                config = route_pb2.RouteConfiguration()
                entry.resource.Unpack(config)
                found = found or config.HasField("vhds")
            if len(self._vhds) >= _WHOLE_LIMIT:
                del self._vhds[next(iter(self._vhds))]
            self._vhds[response.nonce] = found
        return found

    def of(self, type_url: str, resource: discovery_pb2.Resource) -> tuple[str, ...]:
        key = (type_url, resource.name, resource.version)
        names = self._by_resource.get(key)
        if names is None:
            names = referenced_by(type_url, [resource.resource])
            self.parses += 1
            if len(self._by_resource) >= _CACHE_LIMIT:
                self._by_resource.clear()
            self._by_resource[key] = names
        return names

    def whole(self, response: Any) -> tuple[Refs, tuple[str, ...]]:
        """The reference table of a first response, and the sorted child names."""
        key = (response.type_url, response.system_version_info, len(response.resources))
        found = self._whole.get(key)
        if found is None:
            refs = {r.name: self.of(response.type_url, r) for r in _entries(response)}
            found = (refs, _union(refs.values()))
            if len(self._whole) >= _WHOLE_LIMIT:
                del self._whole[next(iter(self._whole))]
            self._whole[key] = found
        return found


def _union(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    names: set[str] = set()
    for group in groups:
        names.update(group)
    return tuple(sorted(names))


class _Held:
    """A stream's reference table for one parent type (shared until changed)."""

    __slots__ = ("children", "refs", "shared")

    def __init__(self) -> None:
        self.refs: Refs = {}
        self.shared = False
        self.children: tuple[str, ...] = ()

    def apply(self, response: Any, cache: DeltaNameCache) -> tuple[str, ...]:
        """Apply a parent response; return the child names now referenced, sorted."""
        if not self.refs and not response.removed_resources:
            self.refs, self.children = cache.whole(response)
            self.shared = True
            return self.children
        if self.shared:
            self.refs = dict(self.refs)
            self.shared = False
        changed = False
        for resource in _entries(response):
            names = cache.of(response.type_url, resource)
            if self.refs.get(resource.name) != names:
                self.refs[resource.name] = names
                changed = True
        for name in response.removed_resources:
            if self.refs.pop(name, None):
                changed = True
        if changed:
            self.children = _union(self.refs.values())
        return self.children


def _difference(
    before: tuple[str, ...], after: tuple[str, ...]
) -> tuple[Iterable[str], Iterable[str]]:
    """Names to subscribe and to unsubscribe, sorted, going from ``before`` to
    ``after`` (both sorted). A first subscription is ``after`` as it is: thousands
    of streams make it, and sorting it again each time is the simulator's cost,
    not the control plane's."""
    if not before:
        return after, ()
    old, new = set(before), set(after)
    return sorted(new - old), sorted(old - new)


async def run_delta_stream(
    channel: grpc.aio.Channel,
    state: StreamState,
    node: base_pb2.Node,
    cache: DeltaNameCache,
    on_ack: AckObserver | None = None,
) -> None:
    """Run one delta ADS stream until the server ends it or the task is cancelled.

    Errors end the stream and are recorded in ``state.error``; nothing is retried.
    ``on_ack`` (optional) sees each response right after its ACK was written.
    """
    method = channel.stream_stream(
        DELTA_ADS_METHOD,
        request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
        response_deserializer=SimDeltaResponse.FromString,
    )
    call = method(wait_for_ready=True)
    held = {CLUSTER_TYPE: _Held(), LISTENER_TYPE: _Held()}
    state.types.setdefault(VHDS_TYPE, TypeState())
    try:
        first = discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=CLUSTER_TYPE)
        await call.write(first)
        state.types[CLUSTER_TYPE].requested = True
        await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=LISTENER_TYPE))
        state.types[LISTENER_TYPE].requested = True
        state.connected_at = time.monotonic()
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                state.error = state.error or "server closed the stream"
                break
            assert isinstance(response, SimDeltaResponse)
            await _on_response(call, state, response, held, cache)
            if on_ack is not None:
                on_ack(state, response, state.types[response.type_url].acked_at)
    except grpc.aio.AioRpcError as exc:
        state.error = f"{exc.code().name}: {exc.details()}"
    except grpc.aio.UsageError as exc:  # the call was cancelled while writing
        state.error = f"stream closed: {exc}"
    finally:
        state.closed = True
        call.cancel()


async def _on_response(
    call: Any,
    state: StreamState,
    response: Any,
    held: dict[str, _Held],
    cache: DeltaNameCache,
) -> None:
    type_url = response.type_url
    current = state.types.setdefault(type_url, TypeState())
    current.received_version = response.system_version_info
    current.received_nonce = response.nonce
    current.received_at = time.monotonic()
    current.responses += 1

    child_type = _CHILD_TYPE.get(type_url)
    if child_type is not None:
        names = held[type_url].apply(response, cache)
        child = state.types[child_type]
        if names != child.subscribed:
            subscribe, unsubscribe = _difference(child.subscribed, names)
            child.subscribed = names
            child.requested = True
            # Subscribe (or unsubscribe) before ACKing the parent, as Envoy does.
            await call.write(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=child_type,
                    resource_names_subscribe=subscribe,
                    resource_names_unsubscribe=unsubscribe,
                )
            )

    vhds = state.types[VHDS_TYPE]
    if type_url == ROUTE_TYPE and not vhds.requested and cache.names_vhds(response):
        vhds.requested = True
        await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=VHDS_TYPE))
    await call.write(
        discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=response.nonce)
    )
    current.acked_version = response.system_version_info
    current.acked_nonce = response.nonce
    current.acked_at = time.monotonic()
    vhds_done = not vhds.requested or bool(vhds.acked_version)
    if state.complete_at is None and vhds_done and state.is_complete():
        state.complete_at = current.acked_at
