"""A stream whose writer is behind is left out of pushes and catches up once, from
the newest configuration, instead of being queued every intermediate version."""

from __future__ import annotations

import asyncio

from envoy.service.discovery.v3 import discovery_pb2
from test_backlog_gauges import _subscribe
from test_server_grpc import GroupGenerator, eventually, group_sets

from pilotfish.xds.server import XdsServer
from pilotfish.xds.types import CLUSTER_TYPE


async def test_a_stream_behind_gets_only_the_newest_version_once_its_queue_empties() -> None:
    generator = GroupGenerator()
    server = XdsServer(generator)
    stream = server._open_stream("p1", "g1")
    initial = _subscribe(stream)
    for response in initial:
        stream.enqueue(response)
    queued = stream.backlog
    assert queued == len(initial) > 0

    # Two changes while nothing has been written: neither adds to the queue.
    for timeout in (2, 3):
        generator.sets["g1"] = group_sets(clusters={"a": 1, "b": timeout})
        await server._push_all()
        assert stream.backlog == queued
    assert stream.needs_push
    newest = generator.sets["g1"][CLUSTER_TYPE].version

    written: list[discovery_pb2.DiscoveryResponse] = []
    release = asyncio.Event()

    async def write(data: bytes) -> None:
        written.append(discovery_pb2.DiscoveryResponse.FromString(data))
        if len(written) == len(initial):
            await release.wait()  # hold the writer, as a slow client does

    writer = asyncio.create_task(stream.write_loop(write))
    try:
        await eventually(lambda: len(written) == len(initial))
        release.set()
        await eventually(lambda: len(written) > len(initial) and not stream.backlog)
        later = [r for r in written[len(initial) :] if r.type_url == CLUSTER_TYPE]
        # One CDS response, with the newest clusters: the middle version was skipped.
        assert [r.version_info for r in later] == [newest]
        assert not stream.needs_push
    finally:
        writer.cancel()
        stream.close()


async def test_a_stream_keeping_up_is_pushed_at_once() -> None:
    generator = GroupGenerator()
    server = XdsServer(generator)
    stream = server._open_stream("p1", "g1")
    _subscribe(stream)  # planned and (as if) written: nothing queued
    generator.sets["g1"] = group_sets(clusters={"a": 1, "b": 2})
    await server._push_all()
    assert stream.backlog == 1 and not stream.needs_push
    stream.close()
