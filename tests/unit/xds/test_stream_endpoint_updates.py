"""Large endpoint updates skip the write limiter (never wait for a slot or an ACK);
a stream's first EDS response and other large responses keep taking a slot until
they are answered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.polling import apoll

from pilotfish.xds.server.encode import ResponseEncoder
from pilotfish.xds.server.state import AdsStreamState, Response
from pilotfish.xds.server.stream import ProxyStream, WriteLimiter
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, ResourceSet

_BIG = 80 * 1024  # over the limiter's threshold for small responses


def _set(type_url: str, count: int, size: int = _BIG) -> ResourceSet:
    return ResourceSet(type_url, {f"r{i}": bytes([i]) * size for i in range(count)})


def _stream(stream_id: int) -> ProxyStream:
    return ProxyStream(stream_id, f"p{stream_id}", None, 0.0, AdsStreamState(), ResponseEncoder())


async def test_endpoint_updates_are_written_while_every_slot_waits_for_an_ack() -> None:
    limiter = WriteLimiter(max_in_flight=1, slow_after=30)
    written: list[tuple[int, str]] = []
    tasks: list[asyncio.Task[None]] = []

    def run(stream: ProxyStream) -> ProxyStream:
        async def write(data: bytes) -> None:
            # (The resources are filler, not messages: find the type's name.)
            kind = ENDPOINT_TYPE if ENDPOINT_TYPE.encode() in data else CLUSTER_TYPE
            written.append((stream.stream_id, kind))

        writer: Callable[[bytes], Awaitable[None]] = write
        tasks.append(asyncio.create_task(stream.write_loop(writer, limiter)))
        return stream

    clusters, waiting, updates, first = (run(_stream(i)) for i in (1, 2, 3, 4))
    try:
        # A large CDS response holds the one slot until stream 1 answers it ...
        clusters.enqueue(Response(CLUSTER_TYPE, "v1", "n1", _set(CLUSTER_TYPE, 2)))
        await apoll(lambda: written == [(1, CLUSTER_TYPE)], "the CDS response written", 5)
        # ... so stream 2's large CDS response waits for it.
        waiting.enqueue(Response(CLUSTER_TYPE, "v1", "n2", _set(CLUSTER_TYPE, 2)))
        await apoll(lambda: limiter.waiting_for_slot == 1, "stream 2 to wait for the slot", 5)
        # Stream 3 had its (small) first EDS response; its large updates go out
        # meanwhile, a partial one and a whole set alike.
        eds = _set(ENDPOINT_TYPE, 3)
        updates.enqueue(Response(ENDPOINT_TYPE, "e1", "n3", _set(ENDPOINT_TYPE, 1, 10)))
        updates.enqueue(Response(ENDPOINT_TYPE, "e2", "n4", eds, names=("r0", "r1")))
        updates.enqueue(Response(ENDPOINT_TYPE, "e3", "n5", eds))
        await apoll(lambda: written.count((3, ENDPOINT_TYPE)) == 3, "stream 3's updates", 5)
        # A stream's first EDS response, large (a full push), takes a slot.
        first.enqueue(Response(ENDPOINT_TYPE, "e3", "n6", eds))
        await apoll(lambda: limiter.waiting_for_slot == 2, "stream 4's first to wait too", 5)
        assert (4, ENDPOINT_TYPE) not in written and (2, CLUSTER_TYPE) not in written
        clusters.replied("n1")
        await apoll(lambda: len(written) == 5, "one of the waiting writes after the ACK", 5)
        assert limiter.waiting_for_slot == 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
