"""Delta (incremental) ADS over real gRPC: a grpc.aio XdsServer and a real delta client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import pytest
from ads_helpers import cla, cluster, listener, pack, route
from delta_client import DeltaClient
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import any_pb2
from prometheus_client import CollectorRegistry

from pilotfish.ir import CredentialSecret
from pilotfish.xds.build.secrets import build_secret
from pilotfish.xds.build.vhds import vhds_cache
from pilotfish.xds.server import XdsServer
from pilotfish.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    VHDS_TYPE,
    ResourceSet,
    resource_version,
)
from polling import apoll

PROBES = {f"probe{i}": cla(f"probe{i}", 7000 + i) for i in range(1, 20)}
OWN_SECRET = "kubernetes://default/app-cert"
FOREIGN_SECRET = "kubernetes://istio-system/gw-cert"


def make_sets(
    clusters: Mapping[str, int] | None = None,
    endpoints: Mapping[str, int] | None = None,
    listeners: Mapping[str, int] | None = None,
    routes: Mapping[str, str] | None = None,
) -> dict[str, ResourceSet]:
    clusters = {"a": 1, "b": 1} if clusters is None else clusters
    endpoints = {"a": 8080, "b": 8081} if endpoints is None else endpoints
    listeners = {"l1": 15001} if listeners is None else listeners
    routes = {"r1": "a"} if routes is None else routes
    secrets = {
        n: pack(build_secret(CredentialSecret(n, cert_pem="C", key_pem="K")))
        for n in (OWN_SECRET, FOREIGN_SECRET)
    }
    return {
        CLUSTER_TYPE: ResourceSet(CLUSTER_TYPE, {n: cluster(n, t) for n, t in clusters.items()}),
        ENDPOINT_TYPE: ResourceSet(
            ENDPOINT_TYPE, {**{n: cla(n, p) for n, p in endpoints.items()}, **PROBES}
        ),
        LISTENER_TYPE: ResourceSet(
            LISTENER_TYPE, {n: listener(n, p) for n, p in listeners.items()}
        ),
        ROUTE_TYPE: ResourceSet(ROUTE_TYPE, {n: route(n, c) for n, c in routes.items()}),
        SECRET_TYPE: ResourceSet(SECRET_TYPE, secrets),
    }


def in_vhds_form(sets: Mapping[str, ResourceSet]) -> dict[str, ResourceSet]:
    """``sets`` as a delta stream serves them: RDS with ``vhds``, and the VHDS set."""
    split = vhds_cache.split(sets[ROUTE_TYPE])
    return {**sets, ROUTE_TYPE: split.routes, VHDS_TYPE: vhds_cache.subscribed(split, ["r1"])}


def unpack_route(data: bytes) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration()
    any_pb2.Any.FromString(data).Unpack(config)
    return config


def unpack_vhost(data: bytes) -> route_components_pb2.VirtualHost:
    vhost = route_components_pb2.VirtualHost()
    any_pb2.Any.FromString(data).Unpack(vhost)
    return vhost


class Generator:
    def __init__(self) -> None:
        self.sets = make_sets()

    def view_of(self, node_id: str, metadata: Mapping[str, Any]) -> object:
        if not node_id:
            raise ValueError("node.id is required")
        return "v"

    def generate(self, view: object) -> Mapping[str, ResourceSet]:
        return self.sets


@pytest.fixture
def generator() -> Generator:
    return Generator()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def server(generator: Generator, registry: CollectorRegistry) -> AsyncIterator[XdsServer]:
    srv = XdsServer(
        generator, quiet_period=0.01, max_delay=0.05, registry=registry, plaintext_secrets=True
    )
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


def client_of(channel: grpc.aio.Channel, node: str = "p1.default") -> DeltaClient:
    return DeltaClient(channel, node, {"NAMESPACE": "default"})


async def start(client: DeltaClient) -> None:
    """Envoy's start-up: CDS wildcard, EDS for its clusters, LDS wildcard, RDS by name,
    then VHDS (naming nothing) for the route configuration that names ``vhds``."""
    await client.fetch(CLUSTER_TYPE)
    await client.fetch(ENDPOINT_TYPE, ["a", "b"])
    await client.fetch(LISTENER_TYPE)
    await client.fetch(ROUTE_TYPE, ["r1"])
    await client.fetch(VHDS_TYPE)


class Prober:
    """Proves nothing else is queued: a new EDS name must be the very next response."""

    def __init__(self) -> None:
        self.n = 0

    async def __call__(self, client: DeltaClient) -> None:
        self.n += 1
        name = f"probe{self.n}"
        resp = await client.fetch(ENDPOINT_TYPE, [name])
        assert [r.name for r in resp.resources] == [name], "something else was queued"
        assert not resp.removed_resources


def status_of(server: XdsServer, proxy_id: str = "p1.default") -> Any:
    return next((s for s in server.status() if s.proxy_id == proxy_id), None)


async def test_initial_push_sends_per_resource_versions(
    server: XdsServer, channel: grpc.aio.Channel, generator: Generator
) -> None:
    client = client_of(channel)
    await start(client)
    sets = generator.sets
    for type_url, names in (
        (CLUSTER_TYPE, ["a", "b"]),
        (ENDPOINT_TYPE, ["a", "b"]),  # only the subscribed names
        (LISTENER_TYPE, ["l1"]),
        (ROUTE_TYPE, ["r1"]),
        (VHDS_TYPE, ["r1/vh"]),
    ):
        held = client.held[type_url]
        assert sorted(held) == names
        for name, (version, data) in held.items():
            assert data == in_vhds_form(sets)[type_url].resources[name]
            assert version == resource_version(data)
    # The route configuration names VHDS and carries no virtual host itself.
    config = unpack_route(client.held[ROUTE_TYPE]["r1"][1])
    assert config.HasField("vhds") and not config.virtual_hosts
    vhost = unpack_vhost(client.held[VHDS_TYPE]["r1/vh"][1])
    assert vhost.name == "r1/vh" and list(vhost.domains) == ["*"]

    async def synced() -> bool:
        st = status_of(server)
        return st is not None and all(t.synced for t in st.types.values())

    await apoll(synced, "all types ACKed", 10, interval=0.01, ignore=())
    st = status_of(server)
    assert st.protocol == "delta" and st.to_json()["protocol"] == "delta"
    assert st.types[CLUSTER_TYPE].acked_version == sets[CLUSTER_TYPE].version
    await Prober()(client)


async def test_streams_sending_the_same_large_subscription_share_its_reading(
    server: XdsServer, channel: grpc.aio.Channel, generator: Generator
) -> None:
    """Sidecars with the same clusters subscribe the same long list of load
    assignments: read once, and each stream is still answered in full."""
    many = {
        f"outbound|{9000 + i}||svc-{i:03}.default.svc.cluster.local": 9000 + i for i in range(200)
    }
    generator.sets = make_sets(clusters=dict.fromkeys(many, 1), endpoints=many)
    everything = sorted(generator.sets[ENDPOINT_TYPE].resources)
    clients = [client_of(channel, f"p{i}.default") for i in range(3)]
    answers = []
    for client in clients:
        await client.fetch(CLUSTER_TYPE)
        answers.append(await client.fetch(ENDPOINT_TYPE, everything))
    assert server._delta_requests.hits == 2  # the 2nd and 3rd streams' subscriptions
    for client, answer in zip(clients, answers, strict=True):
        assert sorted(client.held[ENDPOINT_TYPE]) == everything
        # The whole set, one frame for all: the same nonce on every stream.
        assert answer.nonce == answers[0].nonce
    # Each stream still keeps its own subscription: one unsubscribes, the others keep.
    first = everything[0]
    await clients[0].send(ENDPOINT_TYPE, unsubscribe=[first])
    probe = Prober()
    await probe(clients[0])
    changed = {**many, first: 1234}
    generator.sets = make_sets(clusters=dict.fromkeys(many, 1), endpoints=changed)
    server.notify_change()
    for client in clients[1:]:
        resp = await client.recv()
        assert [r.name for r in resp.resources] == [first]
    await probe(clients[0])  # nothing for the unsubscribed one came first


async def test_only_changes_are_sent_and_removals_named(
    server: XdsServer, channel: grpc.aio.Channel, generator: Generator
) -> None:
    client = client_of(channel)
    await start(client)
    probe = Prober()

    # A route edit: the one virtual host that changed, over VHDS; no RDS at all.
    generator.sets = make_sets(routes={"r1": "b"})
    server.notify_change()
    resp = await client.recv()
    assert resp.type_url == VHDS_TYPE and [r.name for r in resp.resources] == ["r1/vh"]
    assert resp.system_version_info == in_vhds_form(generator.sets)[VHDS_TYPE].version
    await client.ack(resp)
    await probe(client)

    # An endpoint change of one cluster: only that load assignment.
    generator.sets = make_sets(routes={"r1": "b"}, endpoints={"a": 9090, "b": 8081})
    server.notify_change()
    resp = await client.recv()
    assert resp.type_url == ENDPOINT_TYPE and [r.name for r in resp.resources] == ["a"]
    await client.ack(resp)
    await probe(client)

    # Cluster b and listener l1 go away, l2 arrives: removals, in push order.
    generator.sets = make_sets(
        clusters={"a": 1}, endpoints={"a": 9090}, listeners={"l2": 15002}, routes={"r1": "b"}
    )
    server.notify_change()
    cds = await client.recv()
    assert cds.type_url == CLUSTER_TYPE
    assert not cds.resources and list(cds.removed_resources) == ["b"]
    await client.ack(cds)
    # b was subscribed over EDS and vanished: removed too (a is unchanged).
    eds = await client.recv()
    assert eds.type_url == ENDPOINT_TYPE and list(eds.removed_resources) == ["b"]
    assert not eds.resources
    await client.ack(eds)
    lds = await client.recv()
    assert lds.type_url == LISTENER_TYPE
    assert [r.name for r in lds.resources] == ["l2"] and list(lds.removed_resources) == ["l1"]
    await client.ack(lds)
    assert sorted(client.held[CLUSTER_TYPE]) == ["a"]
    await probe(client)


async def test_modified_cluster_gets_its_endpoints_again(
    server: XdsServer, channel: grpc.aio.Channel, generator: Generator
) -> None:
    """Envoy re-creates a modified cluster, which warms until its EDS arrives."""
    client = client_of(channel)
    await start(client)
    generator.sets = make_sets(clusters={"a": 5, "b": 1})
    server.notify_change()
    cds = await client.recv()
    assert cds.type_url == CLUSTER_TYPE and [r.name for r in cds.resources] == ["a"]
    eds = await client.recv()
    assert eds.type_url == ENDPOINT_TYPE and [r.name for r in eds.resources] == ["a"]
    await client.ack(cds)
    await client.ack(eds)
    await Prober()(client)


async def test_named_subscribe_and_unsubscribe(
    server: XdsServer, channel: grpc.aio.Channel, generator: Generator
) -> None:
    client = client_of(channel)
    await client.fetch(CLUSTER_TYPE)
    resp = await client.fetch(ENDPOINT_TYPE, ["a"])
    assert [r.name for r in resp.resources] == ["a"]
    # Subscribing b sends only b.
    resp = await client.fetch(ENDPOINT_TYPE, ["b"])
    assert [r.name for r in resp.resources] == ["b"]
    # Unsubscribe b: no answer, and changes to b are no longer sent.
    await client.send(ENDPOINT_TYPE, unsubscribe=["b"])
    probe = Prober()
    # A stream's requests are handled in order: once the probe is answered, the
    # unsubscription is in force (an idle server pushes a change at once).
    await probe(client)
    generator.sets = make_sets(endpoints={"a": 8080, "b": 9999})
    server.notify_change()
    await server.wait_idle()
    await probe(client)  # the next response is the probe's: nothing for b
    # A name that does not exist yet is answered once it appears.
    await client.send(ENDPOINT_TYPE, ["later"])
    generator.sets = make_sets(endpoints={"a": 8080, "b": 9999, "later": 7777})
    server.notify_change()
    resp = await client.recv()
    assert [r.name for r in resp.resources] == ["later"]


async def test_wildcard_explicit_star_and_unsubscribe_star(
    server: XdsServer, channel: grpc.aio.Channel, generator: Generator
) -> None:
    client = client_of(channel)
    resp = await client.fetch(CLUSTER_TYPE, ["*"])
    assert sorted(r.name for r in resp.resources) == ["a", "b"]
    # Leaving the wildcard for a name: later additions are no longer sent.
    await client.send(CLUSTER_TYPE, ["a"], ["*"])
    resp = await client.recv()
    assert [r.name for r in resp.resources] == ["a"]
    await client.ack(resp)
    generator.sets = make_sets(clusters={"a": 1, "b": 1, "c": 1})
    server.notify_change()
    await server.wait_idle()
    await Prober()(client)


async def test_reconnect_with_initial_versions_sends_only_the_difference(
    server: XdsServer, channel: grpc.aio.Channel, generator: Generator
) -> None:
    first = client_of(channel)
    await start(first)
    held = {t: first.versions(t) for t in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE)}
    first.cancel()
    await apoll(lambda: server.stream_count == 0, "stream gone", 10, interval=0.01, ignore=())

    # While disconnected: cluster b is removed, listener l1 changes.
    generator.sets = make_sets(clusters={"a": 1}, listeners={"l1": 15009})
    server.notify_change()
    await server.wait_idle()

    again = client_of(channel)
    cds = await again.fetch(CLUSTER_TYPE, initial=held[CLUSTER_TYPE])
    assert not cds.resources and list(cds.removed_resources) == ["b"]
    # Nothing differs for EDS: no answer, so the next one is LDS's.
    await again.send(ENDPOINT_TYPE, ["a"], initial={"a": held[ENDPOINT_TYPE]["a"]})
    lds = await again.fetch(LISTENER_TYPE, initial=held[LISTENER_TYPE])
    assert [r.name for r in lds.resources] == ["l1"] and not lds.removed_resources
    await Prober()(again)


async def test_reconnect_resends_endpoints_of_re_created_clusters(
    server: XdsServer, channel: grpc.aio.Channel, generator: Generator
) -> None:
    """A cluster held in another version is re-created and warms: its EDS comes again,
    whether the client re-subscribes EDS after CDS or before."""
    first = client_of(channel)
    await start(first)
    cds_held, eds_held = first.versions(CLUSTER_TYPE), first.versions(ENDPOINT_TYPE)
    first.cancel()
    await apoll(lambda: server.stream_count == 0, "stream gone", 10, interval=0.01, ignore=())
    generator.sets = make_sets(clusters={"a": 7, "b": 1})
    server.notify_change()
    await server.wait_idle()

    after = client_of(channel, "p2.default")
    cds = await after.fetch(CLUSTER_TYPE, initial=cds_held)
    assert [r.name for r in cds.resources] == ["a"]
    eds = await after.fetch(ENDPOINT_TYPE, ["a", "b"], initial=eds_held)
    assert [r.name for r in eds.resources] == ["a"]
    await Prober()(after)

    before = client_of(channel, "p3.default")
    await before.send(ENDPOINT_TYPE, ["a", "b"], initial=eds_held)
    await before.send(CLUSTER_TYPE, initial=cds_held)
    cds = await before.recv()
    assert cds.type_url == CLUSTER_TYPE and [r.name for r in cds.resources] == ["a"]
    eds = await before.recv()
    assert eds.type_url == ENDPOINT_TYPE and [r.name for r in eds.resources] == ["a"]


async def test_reconnect_with_everything_current_gets_an_empty_answer(
    server: XdsServer, channel: grpc.aio.Channel
) -> None:
    first = client_of(channel)
    await start(first)
    held = first.versions(CLUSTER_TYPE)
    eds_held = first.versions(ENDPOINT_TYPE)
    first.cancel()
    again = client_of(channel, "p2.default")
    cds = await again.fetch(CLUSTER_TYPE, initial=held)
    assert not cds.resources and not cds.removed_resources  # answered: initial fetch done
    await again.send(ENDPOINT_TYPE, ["a", "b"], initial=eds_held)

    def eds_synced() -> bool:
        # The client holds the current set: in sync, though nothing was sent.
        eds = status_of(server, "p2.default").types[ENDPOINT_TYPE]
        return bool(eds.synced and eds.sent_nonce == "")

    await apoll(eds_synced, "EDS in sync without a response", 10, interval=0.01, ignore=())
    await Prober()(again)  # EDS had nothing to send: the probe's answer comes first


async def test_nack_is_recorded_and_contained(
    server: XdsServer,
    channel: grpc.aio.Channel,
    generator: Generator,
    registry: CollectorRegistry,
) -> None:
    client = client_of(channel)
    await start(client)
    good = generator.sets[LISTENER_TYPE].version
    generator.sets = make_sets(listeners={"l1": 1})
    bad = generator.sets[LISTENER_TYPE].version
    server.notify_change()
    resp = await client.recv()
    assert resp.type_url == LISTENER_TYPE
    await client.send(LISTENER_TYPE, nonce=resp.nonce, error="port 1: permission denied")

    async def nacked() -> bool:
        st = status_of(server)
        return st is not None and st.types[LISTENER_TYPE].nack_message is not None

    await apoll(nacked, "NACK recorded", 10, interval=0.01, ignore=())
    lds = status_of(server).types[LISTENER_TYPE]
    assert lds.nack_version == bad and lds.acked_version == good and not lds.synced
    assert lds.nack_message == "port 1: permission denied"
    assert registry.get_sample_value("pilotfish_xds_nacks_total", {"type": "LDS"}) == 1
    # Not re-sent (no NACK loop): the next response is the probe's.
    await Prober()(client)
    # A later valid change goes on, and its ACK clears the NACK.
    generator.sets = make_sets(listeners={"l1": 15003})
    server.notify_change()
    resp = await client.recv()
    assert resp.type_url == LISTENER_TYPE and [r.name for r in resp.resources] == ["l1"]
    await client.ack(resp)

    async def cleared() -> bool:
        st = status_of(server).types[LISTENER_TYPE]
        return st.nack_message is None and st.synced

    await apoll(cleared, "NACK cleared by the ACK", 10, interval=0.01, ignore=())


async def test_stale_nonce_still_applies_subscription(
    server: XdsServer, channel: grpc.aio.Channel
) -> None:
    client = client_of(channel)
    await client.fetch(CLUSTER_TYPE)
    await client.fetch(ENDPOINT_TYPE, ["a"])
    await client.send(ENDPOINT_TYPE, ["b"], nonce="no-such-nonce")
    resp = await client.recv()
    assert [r.name for r in resp.resources] == ["b"]


async def test_secrets_only_for_the_streams_namespace(
    server: XdsServer, channel: grpc.aio.Channel, registry: CollectorRegistry
) -> None:
    # The plain-text port with the development opt-in trusts the claimed
    # namespace; another namespace's secret is withheld and counted.
    client = client_of(channel)
    await client.fetch(CLUSTER_TYPE)
    await client.send(SECRET_TYPE, [OWN_SECRET, FOREIGN_SECRET])
    resp = await client.recv()
    assert resp.type_url == SECRET_TYPE
    assert [r.name for r in resp.resources] == [OWN_SECRET]
    await client.ack(resp)
    assert (
        registry.get_sample_value("pilotfish_xds_secret_denied_total", {"reason": "plaintext"}) == 1
    )
    assert status_of(server).secrets_denied == {FOREIGN_SECRET: "plaintext"}
    await Prober()(client)


async def test_sotw_and_delta_clients_share_one_server(
    server: XdsServer, channel: grpc.aio.Channel
) -> None:
    from ads_client import AdsClient, resource_names

    sotw = AdsClient(channel, "sotw.default")
    got = await sotw.fetch(CLUSTER_TYPE)
    assert resource_names(got) == ["a", "b"]
    delta = client_of(channel, "delta.default")
    resp = await delta.fetch(CLUSTER_TYPE)
    assert sorted(r.name for r in resp.resources) == ["a", "b"]
    protocols = {s.proxy_id: s.protocol for s in server.status()}
    assert protocols == {"delta.default": "delta", "sotw.default": "sotw"}
    decoded = cluster_pb2.Cluster()
    resp.resources[0].resource.Unpack(decoded)
    assert decoded.name in ("a", "b")
