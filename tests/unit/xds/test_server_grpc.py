"""XdsServer over real gRPC: a grpc.aio server on port 0 and real ADS clients."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import pytest
from ads_client import AdsClient, resource_names
from ads_helpers import cla, cluster, listener, route
from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import CollectorRegistry

from pilotfish.xds.server import ADS_METHOD, ADS_SERVICE, XdsServer
from pilotfish.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ResourceSet,
)
from polling import apoll

PROBES = {f"probe{i}": cla(f"probe{i}", 7000 + i) for i in range(1, 30)}


def group_sets(
    clusters: dict[str, int] | None = None,
    endpoints: dict[str, int] | None = None,
    listener_port: int = 15001,
    route_cluster: str = "a",
) -> dict[str, ResourceSet]:
    clusters = clusters if clusters is not None else {"a": 1, "b": 1}
    endpoints = endpoints if endpoints is not None else {"a": 8080, "b": 8081}
    return {
        CLUSTER_TYPE: ResourceSet(CLUSTER_TYPE, {n: cluster(n, t) for n, t in clusters.items()}),
        ENDPOINT_TYPE: ResourceSet(
            ENDPOINT_TYPE, {**{n: cla(n, p) for n, p in endpoints.items()}, **PROBES}
        ),
        LISTENER_TYPE: ResourceSet(LISTENER_TYPE, {"l1": listener("l1", listener_port)}),
        ROUTE_TYPE: ResourceSet(ROUTE_TYPE, {"r1": route("r1", route_cluster)}),
    }


class GroupGenerator:
    """Views are group names taken from node metadata; sets are fixed per group."""

    def __init__(self) -> None:
        self.sets: dict[str, dict[str, ResourceSet]] = {"g1": group_sets(), "g2": group_sets()}
        self.generated: Counter[object] = Counter()

    def view_of(self, node_id: str, metadata: Mapping[str, Any]) -> object:
        if not node_id:
            raise ValueError("node.id is required")
        group = metadata.get("GROUP", "g1")
        if group not in self.sets:
            raise ValueError(f"unknown group {group!r}")
        return group

    def generate(self, view: object) -> Mapping[str, ResourceSet]:
        self.generated[view] += 1
        return self.sets[str(view)]


async def eventually(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]], timeout: float = 10.0
) -> None:
    """Poll ``check`` until true or fail at the deadline."""
    await apoll(check, "the condition", timeout, interval=0.01, ignore=())


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def generator() -> GroupGenerator:
    return GroupGenerator()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def server(
    generator: GroupGenerator, registry: CollectorRegistry
) -> AsyncIterator[XdsServer]:
    srv = XdsServer(generator, quiet_period=0.01, max_delay=0.05, registry=registry)
    srv.port = await srv.start()  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        await srv.close(grace=0)


@pytest.fixture
async def channel(server: XdsServer) -> AsyncIterator[grpc.aio.Channel]:
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")  # type: ignore[attr-defined]
    try:
        yield ch
    finally:
        await ch.close()


def status_of(server: XdsServer, proxy_id: str) -> Any:
    return next((s for s in server.status() if s.proxy_id == proxy_id), None)


async def test_initial_push_and_ack_flow(
    server: XdsServer, channel: grpc.aio.Channel, registry: CollectorRegistry
) -> None:
    client = AdsClient(channel, "p1.default", {"GROUP": "g1"})
    got = await client.subscribe_all()
    assert resource_names(got[CLUSTER_TYPE]) == ["a", "b"]
    assert resource_names(got[ENDPOINT_TYPE]) == ["a", "b"]  # only subscribed names
    assert resource_names(got[LISTENER_TYPE]) == ["l1"]
    assert resource_names(got[ROUTE_TYPE]) == ["r1"]

    def all_acked() -> bool:
        st = status_of(server, "p1.default")
        return st is not None and all(t.synced for t in st.types.values())

    await eventually(all_acked)
    st = status_of(server, "p1.default")
    assert st.view == repr("g1")
    for url, resp in got.items():
        ts = st.types[url]
        assert ts.acked_version == resp.version_info == ts.sent_version
        assert ts.sent_nonce == resp.nonce and ts.nack_message is None
    js = st.to_json()
    assert js["types"]["CDS"]["acked_version"] == got[CLUSTER_TYPE].version_info
    assert metric(registry, "pilotfish_xds_connected_proxies") == 1
    assert metric(registry, "pilotfish_xds_pushes_total", type="CDS") == 1
    sent = server.sent("p1.default")
    assert sent is not None and sent[CLUSTER_TYPE].version == got[CLUSTER_TYPE].version_info
    assert server.sent("nobody") is None
    await client.probe()


async def test_streams_sending_the_same_large_request_share_its_reading(
    server: XdsServer, channel: grpc.aio.Channel, generator: GroupGenerator
) -> None:
    """Sidecars with the same clusters ask for the same long list of load
    assignments: read once, and each stream is still answered and ACKed on its own."""
    many = {
        f"outbound|{9000 + i}||svc-{i:03}.default.svc.cluster.local": 9000 + i for i in range(200)
    }
    generator.sets["g1"] = group_sets(clusters=dict.fromkeys(many, 1), endpoints=many)
    clients = [AdsClient(channel, f"p{i}.default", {"GROUP": "g1"}) for i in range(3)]
    for client in clients:
        got = await client.subscribe_all(eds=sorted(many))
        assert resource_names(got[ENDPOINT_TYPE]) == sorted(many)
    # The 2nd and 3rd streams' EDS requests and their ACKs (the same version and
    # nonce on every stream sent the same response).
    assert server._sotw_requests.hits == 4

    def all_acked() -> bool:
        states = [status_of(server, c.node_id) for c in clients]
        return all(st is not None and st.types[ENDPOINT_TYPE].synced for st in states)

    await eventually(all_acked)
    for client in clients:
        await client.probe()  # each stream changes its own subscription
    first = sorted(many)[0]
    generator.sets["g1"] = group_sets(
        clusters=dict.fromkeys(many, 1), endpoints={**many, first: 1234}
    )
    server.notify_change()
    for client in clients:
        resp = await client.recv()
        assert resp.type_url == ENDPOINT_TYPE
        assert resource_names(resp) == [first]  # load assignments: only what changed


async def test_nack_shows_in_status_and_is_not_resent(
    server: XdsServer,
    channel: grpc.aio.Channel,
    generator: GroupGenerator,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = AdsClient(channel, "p1.default", {"GROUP": "g1"})
    await client.subscribe_all()
    good_version = client.acked[LISTENER_TYPE]

    generator.sets["g1"] = group_sets(listener_port=1)
    server.notify_change()
    push = await client.recv()
    assert push.type_url == LISTENER_TYPE
    with caplog.at_level("WARNING", logger="pilotfish.xds"):
        await client.nack(push, "listener l1: port 1 is not allowed")

        def nacked() -> bool:
            ts = status_of(server, "p1.default").types[LISTENER_TYPE]
            return bool(ts.nack_message == "listener l1: port 1 is not allowed")

        await eventually(nacked)
    ts = status_of(server, "p1.default").types[LISTENER_TYPE]
    assert ts.acked_version == good_version and ts.nack_version == push.version_info
    assert metric(registry, "pilotfish_xds_nacks_total", type="LDS") == 1
    assert any(
        "p1.default" in r.getMessage() and "port 1 is not allowed" in r.getMessage()
        for r in caplog.records
    )

    # The rejected config is not re-sent, neither now nor on another push of the same sets.
    server.notify_change()
    await server.wait_idle()
    await client.probe()

    # A real change sends a new version; its ACK clears the NACK.
    generator.sets["g1"] = group_sets(listener_port=15002)
    server.notify_change()
    fixed = await client.recv()
    assert fixed.type_url == LISTENER_TYPE and fixed.version_info != push.version_info
    await client.ack(fixed)
    await eventually(
        lambda: status_of(server, "p1.default").types[LISTENER_TYPE].nack_message is None
    )


async def test_change_pushes_only_to_proxies_whose_sets_changed(
    server: XdsServer, channel: grpc.aio.Channel, generator: GroupGenerator
) -> None:
    clients = [AdsClient(channel, f"p{i}.ns", {"GROUP": "g1" if i < 2 else "g2"}) for i in range(4)]
    for c in clients:
        await c.subscribe_all()
    before = generator.generated["g1"]

    generator.sets["g1"] = group_sets(clusters={"a": 1, "b": 1, "c": 1})
    server.notify_change()
    for c in clients[:2]:
        resp = await c.recv()
        assert resp.type_url == CLUSTER_TYPE
        assert resource_names(resp) == ["a", "b", "c"]  # CDS: the whole set
        await c.ack(resp)
    await server.wait_idle()
    assert generator.generated["g1"] == before + 1  # one generation for two streams
    for c in clients:
        await c.probe()  # g2 got nothing; g1 got nothing besides CDS


async def test_endpoint_only_change_sends_only_eds(
    server: XdsServer, channel: grpc.aio.Channel, generator: GroupGenerator
) -> None:
    client = AdsClient(channel, "p1.default", {"GROUP": "g1"})
    await client.subscribe_all()
    generator.sets["g1"] = group_sets(endpoints={"a": 8080, "b": 9999})
    server.notify_change()
    resp = await client.recv()
    assert resp.type_url == ENDPOINT_TYPE
    assert resource_names(resp) == ["b"]  # only the changed assignment
    await client.ack(resp)
    await client.probe()


async def test_invalid_node_is_rejected(channel: grpc.aio.Channel, server: XdsServer) -> None:
    for node_id, meta in (("", {}), ("p.ns", {"GROUP": "nope"})):
        client = AdsClient(channel, node_id, meta)
        await client.request(CLUSTER_TYPE)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.recv()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown group" in (info.value.details() or "")
    await eventually(lambda: server.stream_count == 0)


async def test_delta_ads_checks_the_node_like_sotw(channel: grpc.aio.Channel) -> None:
    call = channel.stream_stream(
        f"/{ADS_SERVICE}/DeltaAggregatedResources",
        request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
    )()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        # The server may end the call before the write lands: either step raises.
        await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER_TYPE))
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "node.id" in (info.value.details() or "")


async def test_hostile_requests_are_survived(
    server: XdsServer, channel: grpc.aio.Channel, registry: CollectorRegistry
) -> None:
    client = AdsClient(channel, "p1.default", {"GROUP": "g1"})
    await client.subscribe_all()
    acked = dict(client.acked)

    # Unknown type URLs: no answer, counted, the stream lives on.
    for url in ("type.googleapis.com/no.such.Type", "", "x" * 5000):
        await client.request(url, ["foo"])
    # Stale and garbage nonces: ignored (no ACK recorded, no NACK, no response).
    await client.request(CLUSTER_TYPE, nonce="garbage", version="bogus")
    await client.request(CLUSTER_TYPE, nonce="", version="bogus2")
    await client.request(LISTENER_TYPE, nonce="999999", error="not a real nack")
    await client.request(ENDPOINT_TYPE, ["a", "b", "zzz"], nonce="\u2603", version="v")
    await client.probe()
    await eventually(lambda: metric(registry, "pilotfish_xds_unknown_type_requests_total") == 3)
    st = status_of(server, "p1.default")
    for url in (CLUSTER_TYPE, LISTENER_TYPE):
        assert st.types[url].acked_version == acked[url]
        assert st.types[url].nack_message is None


async def test_abrupt_disconnects_clean_up(
    server: XdsServer, generator: GroupGenerator, registry: CollectorRegistry
) -> None:
    port = server.port  # type: ignore[attr-defined]
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    clients = [AdsClient(ch, f"p{i}.ns", {"GROUP": "g1"}) for i in range(10)]
    for c in clients:
        await c.subscribe_all()
    await eventually(lambda: server.stream_count == 10)
    # Push while some clients vanish mid-stream, without reading or closing cleanly.
    generator.sets["g1"] = group_sets(clusters={"a": 2, "b": 2})
    server.notify_change()
    for c in clients[:5]:
        c.cancel()
    await ch.close(grace=None)  # the rest: the whole connection drops
    await eventually(lambda: server.stream_count == 0)
    assert metric(registry, "pilotfish_xds_connected_proxies") == 0
    assert server.status() == []


async def test_several_streams_per_node_id_status_reports_newest(
    server: XdsServer, channel: grpc.aio.Channel
) -> None:
    old = AdsClient(channel, "same.ns", {"GROUP": "g1"})
    await old.subscribe_all()
    new = AdsClient(channel, "same.ns", {"GROUP": "g2"})
    await new.fetch(CLUSTER_TYPE)
    await eventually(lambda: server.stream_count == 2)
    (st,) = server.status()
    assert st.view == repr("g2")
    assert st.types[LISTENER_TYPE].sent_version == ""  # the new stream has no LDS yet
    new.cancel()
    await eventually(lambda: server.stream_count == 1)
    (st,) = server.status()
    assert st.view == repr("g1")
    await old.probe()


async def _churn_one(ch: grpc.aio.Channel, i: int) -> None:
    client = AdsClient(ch, f"churn{i}.ns", {"GROUP": "g1" if i % 2 else "g2"})
    await client.request(CLUSTER_TYPE)
    if i % 3 == 0:
        client.cancel()  # gone before reading anything: the push is mid-flight
        return
    resp = await client.recv()
    assert resp.type_url == CLUSTER_TYPE
    if i % 3 == 1:
        await client.ack(resp)
        await client.request(ENDPOINT_TYPE, ["a"])
    client.cancel()


async def test_thousands_of_streams_leave_no_trace(
    server: XdsServer, registry: CollectorRegistry
) -> None:
    port = server.port  # type: ignore[attr-defined]
    baseline_tasks = len(asyncio.all_tasks())
    started = time.monotonic()
    total, per_channel = 2000, 250
    for start in range(0, total, per_channel):
        ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await asyncio.gather(*(_churn_one(ch, i) for i in range(start, start + per_channel)))
        if start % (2 * per_channel) == 0:
            await ch.close(grace=None)  # abrupt: drop the connection under open streams
        else:
            await ch.close(grace=1.0)
    await eventually(lambda: server.stream_count == 0, timeout=20)
    await eventually(lambda: len(asyncio.all_tasks()) <= baseline_tasks, timeout=10)
    assert server._streams == {}
    assert time.monotonic() - started < 60
    # Every stream that read its CDS response was really served (2/3 of them).
    assert metric(registry, "pilotfish_xds_pushes_total", type="CDS") >= total * 2 // 3

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        client = AdsClient(ch, "after.ns", {"GROUP": "g1"})
        got = await client.subscribe_all()
        assert resource_names(got[CLUSTER_TYPE]) == ["a", "b"]
        await client.probe()
        assert server.stream_count == 1


async def test_generator_failure_ends_stream_with_internal(
    server: XdsServer, channel: grpc.aio.Channel, generator: GroupGenerator
) -> None:
    def broken(view: object) -> Mapping[str, ResourceSet]:
        raise RuntimeError("translation exploded")

    generator.generate = broken  # type: ignore[method-assign]
    client = AdsClient(channel, "p.ns", {"GROUP": "g2"})
    await client.request(CLUSTER_TYPE)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.recv()
    assert info.value.code() == grpc.StatusCode.INTERNAL
    await eventually(lambda: server.stream_count == 0)


async def test_notify_change_from_another_thread(
    server: XdsServer, channel: grpc.aio.Channel, generator: GroupGenerator
) -> None:
    client = AdsClient(channel, "p1.default", {"GROUP": "g1"})
    await client.subscribe_all()
    generator.sets["g1"] = group_sets(route_cluster="b")
    await asyncio.to_thread(server.notify_change)
    resp = await client.recv()
    assert resp.type_url == ROUTE_TYPE
    await client.ack(resp)
    await client.probe()


async def test_half_closed_client_still_gets_its_answers(channel: grpc.aio.Channel) -> None:
    """A client that asks and closes its side at once (as a one-shot tool does) gets the
    answer before the stream ends with OK; never an empty OK stream."""

    async def ask_once(index: int) -> list[discovery_pb2.DiscoveryResponse]:
        call = channel.stream_stream(
            ADS_METHOD,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )()
        request = discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE)
        request.node.id = f"oneshot-{index}.default"
        request.node.metadata.update({"GROUP": "g1"})
        await call.write(request)
        await call.done_writing()
        responses = [r async for r in call]
        assert await call.code() == grpc.StatusCode.OK
        return responses

    # Many at once, so reading EOF races with writing the answer.
    results = await asyncio.gather(*(ask_once(i) for i in range(40)))
    for responses in results:
        assert [r.type_url for r in responses][:1] == [CLUSTER_TYPE]
        assert resource_names(responses[0]) == ["a", "b"]
