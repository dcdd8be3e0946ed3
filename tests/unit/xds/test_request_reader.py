"""Requests read once per distinct large request (``xds.server.request_reader``)."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds.server.delta_stream import DeltaRequest, delta_request_from_proto
from pilotfish.xds.server.request_reader import RequestReader
from pilotfish.xds.types import ENDPOINT_TYPE

NAMES = [f"outbound|9080||svc-{i}.default.svc.cluster.local" for i in range(200)]


def delta_reader(**limits: int) -> RequestReader[DeltaRequest]:
    return RequestReader(
        discovery_pb2.DeltaDiscoveryRequest.FromString, delta_request_from_proto, **limits
    )


def convert(reader: RequestReader[DeltaRequest], message: object) -> DeltaRequest:
    return reader.record(message)


def subscription(names: list[str], nonce: str = "") -> bytes:
    return discovery_pb2.DeltaDiscoveryRequest(
        type_url=ENDPOINT_TYPE, resource_names_subscribe=names, response_nonce=nonce
    ).SerializeToString()


def test_a_repeated_large_request_is_one_message_and_one_conversion() -> None:
    reader = delta_reader()
    raw = subscription(NAMES)
    first, second = reader.parse(raw), reader.parse(bytes(bytearray(raw)))  # equal, not same
    assert second is first
    assert reader.hits == 1
    converted = convert(reader, first)
    assert convert(reader, second) is converted
    assert converted.subscribe == tuple(NAMES)
    assert converted.subscribe_set == frozenset(NAMES)


def test_different_requests_are_not_confused() -> None:
    reader = delta_reader()
    one = convert(reader, reader.parse(subscription(NAMES)))
    other = convert(reader, reader.parse(subscription(NAMES[:150])))
    acked = convert(reader, reader.parse(subscription(NAMES, nonce="E-1")))
    assert reader.hits == 0
    assert len(other.subscribe) == 150
    assert (one.response_nonce, acked.response_nonce) == ("", "E-1")


def test_small_requests_are_read_each_time() -> None:
    reader = delta_reader()
    raw = subscription(NAMES[:2])
    first, second = reader.parse(raw), reader.parse(raw)
    assert first is not second and first == second
    assert convert(reader, first) == convert(reader, second)
    assert reader.hits == 0


def test_the_byte_budget_forgets_the_oldest_request() -> None:
    raw_a, raw_b = subscription(NAMES), subscription(NAMES[1:])
    reader = delta_reader(budget_bytes=len(raw_a) + len(raw_b) - 1)
    a = reader.parse(raw_a)
    convert(reader, a)
    reader.parse(raw_b)  # over budget: a is forgotten
    again = reader.parse(raw_a)
    assert again is not a and reader.hits == 0
    # A forgotten message still converts (each time, as a small one would).
    assert convert(reader, a).subscribe == tuple(NAMES)
    assert convert(reader, again).subscribe == tuple(NAMES)


def test_a_conversion_is_not_taken_for_another_message_with_a_reused_id() -> None:
    reader = delta_reader(budget_bytes=len(subscription(NAMES)))
    convert(reader, reader.parse(subscription(NAMES)))
    reader.parse(subscription(NAMES[1:]))  # evicts the first
    # Whatever object now has the first one's id, it is converted from itself.
    fresh = discovery_pb2.DeltaDiscoveryRequest.FromString(subscription(NAMES[:3]))
    assert convert(reader, fresh).subscribe == tuple(NAMES[:3])


def test_a_request_kept_by_another_reader_meanwhile_is_the_one_returned() -> None:
    """gRPC could deserialize on its own threads: the table is updated under a lock,
    and parsing happens outside it. Another caller keeping the same request while
    this one parses (simulated by a re-entrant parse) wins; one copy is kept."""
    raw = subscription(NAMES)
    inner: list[object] = []
    calls: list[bytes] = []

    def parse_bytes(data: bytes) -> object:
        calls.append(data)
        if len(calls) == 1:
            inner.append(reader.parse(data))  # "another thread", while this one parses
        return discovery_pb2.DeltaDiscoveryRequest.FromString(data)

    reader: RequestReader[DeltaRequest] = RequestReader(parse_bytes, delta_request_from_proto)
    outer = reader.parse(raw)
    assert outer is inner[0]
    assert reader.parse(raw) is outer and reader.hits == 1
    assert convert(reader, outer) is convert(reader, outer)
