"""Large endpoint updates skip the write limiter's slots (never wait for an ACK to
free one); other large responses keep taking a slot until they are answered."""

from __future__ import annotations

import asyncio

from tests.polling import apoll

from pilotfish.xds.server.encode import ResponseEncoder
from pilotfish.xds.server.state import AdsStreamState, Response
from pilotfish.xds.server.stream import ProxyStream, WriteLimiter
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, ResourceSet

_BIG = 80 * 1024  # over the limiter's threshold for small responses


def _set(type_url: str, count: int) -> ResourceSet:
    return ResourceSet(type_url, {f"r{i}": bytes([i]) * _BIG for i in range(count)})


def _stream(stream_id: int) -> ProxyStream:
    return ProxyStream(stream_id, f"p{stream_id}", None, 0.0, AdsStreamState(), ResponseEncoder())


async def test_an_endpoint_update_is_written_while_every_slot_waits_for_an_ack() -> None:
    limiter = WriteLimiter(max_in_flight=1, slow_after=30)
    clusters, endpoints = _stream(1), _stream(2)
    written: list[tuple[int, str]] = []

    def writer(stream: ProxyStream) -> object:
        async def write(data: bytes) -> None:
            # (The resources are filler, not messages: find the type's name.)
            kind = ENDPOINT_TYPE if ENDPOINT_TYPE.encode() in data else CLUSTER_TYPE
            written.append((stream.stream_id, kind))

        return write

    tasks = [
        asyncio.create_task(s.write_loop(writer(s), limiter))  # type: ignore[arg-type]
        for s in (clusters, endpoints)
    ]
    try:
        # A large CDS response holds the one slot until stream 1 answers it.
        clusters.enqueue(Response(CLUSTER_TYPE, "v1", "n1", _set(CLUSTER_TYPE, 2)))
        await apoll(lambda: written == [(1, CLUSTER_TYPE)], "the CDS response written", 5)
        # A large CDS response on stream 2 waits for that slot.
        endpoints.enqueue(Response(CLUSTER_TYPE, "v1", "n2", _set(CLUSTER_TYPE, 2)))
        await apoll(lambda: limiter.waiting_for_slot == 1, "stream 2 to wait for the slot", 5)
        # A large endpoint update goes out meanwhile, without a slot.
        other = _stream(3)
        tasks.append(asyncio.create_task(other.write_loop(writer(other), limiter)))  # type: ignore[arg-type]
        eds = _set(ENDPOINT_TYPE, 3)
        other.enqueue(Response(ENDPOINT_TYPE, "e2", "n3", eds, names=("r0", "r1")))
        await apoll(lambda: (3, ENDPOINT_TYPE) in written, "the endpoint update written", 5)
        # A whole EDS set (no names: a stream's first) takes a slot like any other.
        other.enqueue(Response(ENDPOINT_TYPE, "e3", "n4", eds))
        await apoll(lambda: limiter.waiting_for_slot == 2, "the whole set to wait too", 5)
        assert written == [(1, CLUSTER_TYPE), (3, ENDPOINT_TYPE)]
        clusters.replied("n1")
        await apoll(lambda: len(written) == 3, "one of the waiting writes after the ACK", 5)
        assert limiter.waiting_for_slot == 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
