"""Smoke test of the benchmark's ADS simulator against a tiny in-test ADS server.

The server serves one EDS cluster, one listener whose HTTP connection manager uses
RDS, one route configuration and one load assignment, with content-digest versions
and a fresh nonce per response. The real control plane is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level package beside `src`, not installed
    sys.path.insert(0, str(ROOT))

from bench.ads_sim import SimConfig, Simulation  # noqa: E402
from bench.config_gen import generate_config, write_service  # noqa: E402
from tests.polling import apoll  # noqa: E402

from pilotfish.xds.server import XdsServer  # noqa: E402
from pilotfish.xds.types import (  # noqa: E402
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ResourceSet,
)

CLUSTER = "outbound|9080||svc-0.default.svc.cluster.local"
ROUTE = "9080"
WILDCARD_TYPES = (CLUSTER_TYPE, LISTENER_TYPE)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _ads() -> config_source_pb2.ConfigSource:
    source = config_source_pb2.ConfigSource()
    source.ads.SetInParent()
    return source


class TinyAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """A SotW ADS server for four fixed resources; ``bump_route()`` pushes a new RDS."""

    def __init__(self) -> None:
        self.weight = 90
        self.requests: list[tuple[int, discovery_pb2.DiscoveryRequest]] = []
        self.responses: list[tuple[int, discovery_pb2.DiscoveryResponse]] = []
        self._outboxes: dict[int, asyncio.Queue[discovery_pb2.DiscoveryResponse]] = {}
        self._subscribed: dict[int, dict[str, tuple[str, ...]]] = {}
        self._nonce = 0

    def _resources(self, type_url: str) -> list[any_pb2.Any]:
        if type_url == CLUSTER_TYPE:
            cluster = cluster_pb2.Cluster(name=CLUSTER, type=cluster_pb2.Cluster.EDS)
            cluster.eds_cluster_config.eds_config.CopyFrom(_ads())
            return [_pack(cluster)]
        if type_url == ENDPOINT_TYPE:
            endpoint = endpoint_components_pb2.LbEndpoint()
            socket = endpoint.endpoint.address.socket_address
            socket.address, socket.port_value = "127.10.0.1", 9080
            cla = endpoint_pb2.ClusterLoadAssignment(
                cluster_name=CLUSTER,
                endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
            )
            return [_pack(cla)]
        if type_url == LISTENER_TYPE:
            hcm = hcm_pb2.HttpConnectionManager(stat_prefix=ROUTE)
            hcm.rds.route_config_name = ROUTE
            hcm.rds.config_source.CopyFrom(_ads())
            network_filter = listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager", typed_config=_pack(hcm)
            )
            listener = listener_pb2.Listener(
                name="0.0.0.0_9080",
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=9080)
                ),
                filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
            )
            return [_pack(listener)]
        if type_url == ROUTE_TYPE:
            weighted = route_components_pb2.WeightedCluster(
                clusters=[
                    route_components_pb2.WeightedCluster.ClusterWeight(
                        name=CLUSTER, weight={"value": self.weight}
                    ),
                    route_components_pb2.WeightedCluster.ClusterWeight(
                        name=CLUSTER + "-b", weight={"value": 100 - self.weight}
                    ),
                ]
            )
            route = route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix="/"),
                route=route_components_pb2.RouteAction(weighted_clusters=weighted),
            )
            vhost = route_components_pb2.VirtualHost(name="svc-0", domains=["*"], routes=[route])
            return [_pack(route_pb2.RouteConfiguration(name=ROUTE, virtual_hosts=[vhost]))]
        return []

    def _response(self, stream: int, type_url: str) -> discovery_pb2.DiscoveryResponse:
        resources = self._resources(type_url)
        digest = hashlib.sha256(b"".join(r.SerializeToString() for r in resources))
        self._nonce += 1
        response = discovery_pb2.DiscoveryResponse(
            version_info=digest.hexdigest()[:12],
            resources=resources,
            type_url=type_url,
            nonce=f"n{self._nonce}",
        )
        self.responses.append((stream, response))
        return response

    def bump_route(self) -> None:
        """Change the route weights and push the new RDS to every stream subscribed to it."""
        self.weight = 50
        for stream, outbox in self._outboxes.items():
            if self._subscribed[stream].get(ROUTE_TYPE):
                outbox.put_nowait(self._response(stream, ROUTE_TYPE))

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        stream = len(self._outboxes)
        outbox: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        self._outboxes[stream] = outbox
        subscribed: dict[str, tuple[str, ...]] = {}
        self._subscribed[stream] = subscribed

        async def read() -> None:
            async for request in request_iterator:
                self.requests.append((stream, request))
                names = tuple(request.resource_names)
                new_type = request.type_url not in subscribed
                if new_type or names != subscribed[request.type_url]:
                    subscribed[request.type_url] = names
                    if names or request.type_url in WILDCARD_TYPES:
                        outbox.put_nowait(self._response(stream, request.type_url))

        reader = asyncio.create_task(read())
        try:
            while True:
                yield await outbox.get()
        finally:
            reader.cancel()


@pytest.fixture
async def tiny_ads() -> AsyncIterator[tuple[TinyAds, str]]:
    servicer = TinyAds()
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


def _unacked(server: TinyAds) -> list[str]:
    """Responses not (yet) answered on their stream by a request echoing version and nonce."""
    missing = []
    for stream, response in server.responses:
        echoes = [
            request
            for s, request in server.requests
            if s == stream
            and request.response_nonce == response.nonce
            and request.type_url == response.type_url
        ]
        if not any(request.version_info == response.version_info for request in echoes):
            missing.append(f"stream {stream}: no request echoes nonce {response.nonce}")
    return missing


async def _assert_every_response_acked(server: TinyAds, timeout: float = 10.0) -> None:
    """Every response is ACKed. The simulator counts an ACK once it has sent it; the
    server records it when its reader task gets to it, so poll with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (missing := _unacked(server)) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert missing == []


async def test_simulator_acks_all_four_types(tiny_ads: tuple[TinyAds, str]) -> None:
    server, target = tiny_ads
    sim = Simulation(
        SimConfig(target=target, proxies=5, services=3, streams_per_channel=2, protocol="sotw")
    )
    await sim.start()
    try:
        report = await sim.wait_full_push(timeout=20.0)
        assert report["converged"], report
        assert report["complete"] == 5
        assert report["stream_errors"] == 0
        assert report["acked_per_type"] == {"CDS": 5, "EDS": 5, "LDS": 5, "RDS": 5}
        # Parsed once per distinct response, not once per stream.
        assert report["name_parses"] == 2

        await _assert_every_response_acked(server)
        first = {s: r for s, r in reversed(server.requests)}
        assert all(r.node.id.startswith("sim-") for r in first.values())
        subscriptions = {
            (r.type_url, tuple(r.resource_names))
            for _, r in server.requests
            if r.type_url in (ENDPOINT_TYPE, ROUTE_TYPE)
        }
        assert subscriptions == {(ENDPOINT_TYPE, (CLUSTER,)), (ROUTE_TYPE, (ROUTE,))}

        mark = sim.mark()
        server.bump_route()
        result = await sim.wait_converged(mark, ROUTE_TYPE, mode="affected", quiet=0.2, timeout=20)
        assert result["converged"], result
        assert result["affected"] == 5 and result["acked"] == 5
        assert result["since_mark_s"] is not None and result["since_mark_s"] >= 0
        assert result["changed_per_type"] == {"CDS": 0, "EDS": 0, "LDS": 0, "RDS": 5}
        await _assert_every_response_acked(server)

        everyone = await sim.wait_converged(mark, ROUTE_TYPE, mode="all", timeout=5)
        assert everyone["converged"] and everyone["affected"] == 5
        # Nothing pushed clusters since the mark: that wait must time out, not pass.
        unchanged = await sim.wait_converged(mark, CLUSTER_TYPE, mode="all", timeout=0.2)
        assert not unchanged["converged"] and unchanged["affected"] == 0
        assert unchanged["last_ack_at"] is None
    finally:
        await sim.close()


async def test_simulator_process_protocol(tiny_ads: tuple[TinyAds, str]) -> None:
    """The subprocess speaks JSON lines: full push, mark, wait for RDS, quit."""
    server, target = tiny_ads
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.ads_sim",
        "--target",
        target,
        "--proxies",
        "3",
        "--services",
        "2",
        "--full-push-timeout",
        "20",
        "--protocol",
        "sotw",
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    async def event() -> dict[str, Any]:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert line, "simulator exited early"
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    async def send(command: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(command).encode() + b"\n")
        await proc.stdin.drain()

    try:
        assert (await event())["event"] == "started"
        full = await event()
        assert full["event"] == "full_push" and full["converged"] and full["complete"] == 3
        await send({"cmd": "mark"})
        assert (await event())["event"] == "mark"
        server.bump_route()
        await send({"cmd": "wait", "type": "RDS", "mode": "affected", "quiet": 0.2})
        waited = await event()
        assert waited["event"] == "wait" and waited["converged"], waited
        assert waited["affected"] == 3
        await send({"cmd": "quit"})
        bye = await event()
        assert bye["event"] == "bye" and bye["cpu_s"] > 0
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_config_generator_writes_one_file_per_service(tmp_path: Path) -> None:
    files = generate_config(tmp_path, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc-0.yaml", "svc-1.yaml", "svc-2.yaml"]
    docs = list(yaml.safe_load_all(files[1].read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["Service"] + ["WorkloadEntry"] * 4 + ["DestinationRule", "VirtualService"]
    entries = [d["spec"] for d in docs if d["kind"] == "WorkloadEntry"]
    assert [e["labels"]["version"] for e in entries] == ["v1", "v1", "v2", "v2"]
    assert all(e["address"].startswith("127.10.") for e in entries)
    all_addresses = {
        d["spec"]["address"]
        for f in files
        for d in yaml.safe_load_all(f.read_text())
        if d["kind"] == "WorkloadEntry"
    }
    assert len(all_addresses) == 12
    route = docs[-1]["spec"]["http"][0]["route"]
    assert [r["weight"] for r in route] == [90, 10]

    write_service(tmp_path, 1, weights=(50, 50), address_overrides={0: "127.11.0.1"})
    edited = list(yaml.safe_load_all(files[1].read_text()))
    assert [r["weight"] for r in edited[-1]["spec"]["http"][0]["route"]] == [50, 50]
    assert edited[1]["spec"]["address"] == "127.11.0.1"
    assert edited[2]["spec"]["address"] == docs[2]["spec"]["address"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # temp file renamed away


def test_generated_config_is_valid_pilotfish_config(tmp_path: Path) -> None:
    from pilotfish.api.loader import load_file

    (path,) = generate_config(tmp_path, 1)
    loaded = load_file(path)
    assert list(loaded.diagnostics) == []
    assert len(loaded.resources) == 7


class _TinySets:
    """TinyAds' four resources as ``ResourceSet``s for the real ``XdsServer``."""

    def __init__(self) -> None:
        self.ads = TinyAds()
        self.sets = self._build()

    def _build(self) -> dict[str, ResourceSet]:
        names = {
            CLUSTER_TYPE: CLUSTER,
            ENDPOINT_TYPE: CLUSTER,
            LISTENER_TYPE: "0.0.0.0_9080",
            ROUTE_TYPE: ROUTE,
        }
        return {
            t: ResourceSet(t, {name: self.ads._resources(t)[0].SerializeToString()})
            for t, name in names.items()
        }

    def bump_route(self) -> None:
        self.ads.weight = 50
        self.sets = self._build()

    def view_of(self, node_id: str, metadata: Mapping[str, Any]) -> object:
        return "sidecars"

    def generate(self, view: object) -> Mapping[str, ResourceSet]:
        return self.sets


async def test_delta_simulator_against_the_real_server() -> None:
    generator = _TinySets()
    server = XdsServer(generator, quiet_period=0.01, max_delay=0.05)
    port = await server.start()
    sim = Simulation(SimConfig(target=f"127.0.0.1:{port}", proxies=5, services=3))
    await sim.start()
    try:
        report = await sim.wait_full_push(timeout=20.0)
        assert report["converged"], report
        assert report["protocol"] == "delta"
        assert report["acked_per_type"] == {"CDS": 5, "EDS": 5, "LDS": 5, "RDS": 5}
        assert report["name_parses"] == 2  # one cluster and one listener, once each
        assert {s.protocol for s in server.status()} == {"delta"}
        # The simulator counts an ACK once it is written; the server reads it a
        # moment later on its end of the stream.
        await apoll(
            lambda: all(t.synced for s in server.status() for t in s.types.values()),
            "the server to read every simulated proxy's ACKs",
            10.0,
        )

        mark = sim.mark()
        generator.bump_route()
        server.notify_change()
        result = await sim.wait_converged(mark, ROUTE_TYPE, mode="affected", quiet=0.2, timeout=20)
        assert result["converged"], result
        assert result["affected"] == 5 and result["acked"] == 5
        assert result["changed_per_type"] == {"CDS": 0, "EDS": 0, "LDS": 0, "RDS": 5}
    finally:
        await sim.close()
        await server.close(grace=0)
