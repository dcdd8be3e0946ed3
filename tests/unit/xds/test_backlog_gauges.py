"""The xDS server's backlog gauges: responses queued for streams, and a pending push."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from test_server_grpc import GroupGenerator, group_sets, metric

from pilotfish.xds.server import XdsServer
from pilotfish.xds.server.state import AdsStreamState, ClientRequest, Response
from pilotfish.xds.server.stream import ProxyStream
from pilotfish.xds.types import CLUSTER_TYPE, LISTENER_TYPE


def _subscribe(stream: ProxyStream) -> list[Response]:
    """What the stream plans once it holds config and asks for CDS and LDS."""
    state = stream.state
    assert isinstance(state, AdsStreamState)
    responses = list(state.update(group_sets()))
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE):
        responses += state.receive(ClientRequest(type_url=type_url), now=0.0).responses
    return responses


async def test_queued_responses_counts_what_streams_have_not_written() -> None:
    registry = CollectorRegistry()
    server = XdsServer(GroupGenerator(), registry=registry)
    assert metric(registry, "pilotfish_xds_queued_responses") == 0
    first = server._open_stream("p1", "g1")
    second = server._open_stream("p2", "g2")
    planned = {stream: _subscribe(stream) for stream in (first, second)}
    for stream, responses in planned.items():
        assert responses
        for response in responses:
            stream.enqueue(response)
    assert metric(registry, "pilotfish_xds_queued_responses") == len(planned[first]) + len(
        planned[second]
    )
    second.close()  # a closed stream drops its backlog
    assert metric(registry, "pilotfish_xds_queued_responses") == len(planned[first])


async def test_push_pending_follows_the_debouncer() -> None:
    registry = CollectorRegistry()
    server = XdsServer(GroupGenerator(), registry=registry, quiet_period=30.0, max_delay=30.0)
    await server.start(port=0)
    try:
        assert metric(registry, "pilotfish_xds_push_pending") == 0
        server.notify_change()
        assert metric(registry, "pilotfish_xds_push_pending") == 1
    finally:
        await server.close(0)
    assert metric(registry, "pilotfish_xds_push_pending") == 0
