"""Rough scale measurement of the ADS server (a script, not a test).

    python tests/unit/xds/push_scale.py [--proxies 1000] [--clusters 3000] [--namespaces 10]

The server runs in this process; the proxies are real gRPC ADS streams in a
child process (as Envoys would be separate processes). Each proxy does the
Envoy start-up dance for CDS (wildcard) and EDS (every cluster), ACKing each.
Every proxy has its own view; its CDS is composed of its namespace's shared
outbound clusters plus one inbound cluster of its own. Then one cluster
changes, which means a full CDS (all clusters) plus one EDS resource to
every proxy. Prints the time until every proxy got its initial
config and the time until every proxy received the change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Mapping
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from prometheus_client import CollectorRegistry

from pilotfish.xds.server import ADS_METHOD, XdsServer
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, ResourceSet

STREAMS_PER_CHANNEL = 100


def _pack(message: Any) -> bytes:
    any_msg = any_pb2.Any()
    any_msg.Pack(message)
    return bytes(any_msg.SerializeToString())


def cluster_name(i: int) -> str:
    return f"outbound|9080||svc-{i}.ns-{i % 50}.svc.cluster.local"


def make_cluster(i: int, timeout_ms: int) -> bytes:
    c = cluster_pb2.Cluster(name=cluster_name(i), type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.FromMilliseconds(timeout_ms)
    c.eds_cluster_config.eds_config.ads.SetInParent()
    c.eds_cluster_config.eds_config.resource_api_version = 2
    c.eds_cluster_config.service_name = cluster_name(i)
    thresholds = c.circuit_breakers.thresholds.add()
    thresholds.max_connections.value = 4294967295
    thresholds.max_requests.value = 4294967295
    c.common_lb_config.healthy_panic_threshold.value = 0
    return _pack(c)


def make_cla(i: int, port: int) -> bytes:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name(i))
    for k in range(3):
        sock = cla.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
        sock.address = f"10.{i % 250}.{k}.{i % 200}"
        sock.port_value = port
    return _pack(cla)


class ScaleGenerator:
    """Every proxy is its own view (as with per-pod labels), like the mesh generator.

    CDS is composed of the proxy's namespace's outbound clusters (shared by the
    namespace) and one inbound cluster of its own; EDS is one set for everyone.
    """

    def __init__(self, clusters: int, namespaces: int) -> None:
        self.clusters = clusters
        self.namespaces = namespaces
        self._build(changed=False)

    def _build(self, changed: bool) -> None:
        def cds(ns: int) -> ResourceSet:
            # Namespaces differ in one cluster's timeout, so each part is distinct.
            res = {
                cluster_name(i): make_cluster(i, 1000 + (ns if i == 0 else 0))
                for i in range(self.clusters)
            }
            if changed:
                res[cluster_name(1)] = make_cluster(1, 5000)
            return ResourceSet(CLUSTER_TYPE, res)

        eds = {cluster_name(i): make_cla(i, 9080) for i in range(self.clusters)}
        if changed:
            eds[cluster_name(1)] = make_cla(1, 9999)
        self.outbound = [cds(ns) for ns in range(self.namespaces)]
        self.endpoints = ResourceSet(ENDPOINT_TYPE, eds)
        self.composed: dict[int, dict[str, ResourceSet]] = {}

    def change(self) -> None:
        self._build(changed=True)

    def view_of(self, node_id: str, metadata: Mapping[str, Any]) -> object:
        return int(node_id.split("-")[1])

    def generate(self, view: object) -> Mapping[str, ResourceSet]:
        index = int(str(view))
        cached = self.composed.get(index)
        if cached is None:
            inbound = ResourceSet(
                CLUSTER_TYPE, {f"inbound|9080||{index}": make_cluster(index, 250)}
            )
            outbound = self.outbound[index % self.namespaces]
            cached = self.composed[index] = {
                CLUSTER_TYPE: ResourceSet.compose(CLUSTER_TYPE, [outbound, inbound]),
                ENDPOINT_TYPE: self.endpoints,
            }
        return cached


# -- the proxies (child process) ------------------------------------------------------------


async def _proxy(
    ch: grpc.aio.Channel,
    index: int,
    names: list[str],
    synced: asyncio.Event,
    counters: dict[str, int],
    total: int,
    changed: asyncio.Event,
) -> None:
    call = ch.stream_stream(
        ADS_METHOD,
        request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )()
    req = discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE)
    req.node.id = f"proxy-{index}"
    await call.write(req)
    cds = await call.read()
    assert len(cds.resources) == len(names) + 1
    await call.write(
        discovery_pb2.DiscoveryRequest(
            type_url=CLUSTER_TYPE, version_info=cds.version_info, response_nonce=cds.nonce
        )
    )
    await call.write(discovery_pb2.DiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names=names))
    eds = await call.read()
    assert len(eds.resources) == len(names)
    await call.write(
        discovery_pb2.DiscoveryRequest(
            type_url=ENDPOINT_TYPE,
            resource_names=names,
            version_info=eds.version_info,
            response_nonce=eds.nonce,
        )
    )
    counters["synced"] += 1
    if counters["synced"] == total:
        synced.set()
    got_cds = got_eds = False
    while not (got_cds and got_eds):
        resp = await call.read()
        if resp.type_url == CLUSTER_TYPE:
            assert len(resp.resources) == len(names) + 1
            got_cds = True
        else:
            assert len(resp.resources) == 1
            got_eds = True
        await call.write(
            discovery_pb2.DiscoveryRequest(
                type_url=resp.type_url,
                resource_names=names if resp.type_url == ENDPOINT_TYPE else (),
                version_info=resp.version_info,
                response_nonce=resp.nonce,
            )
        )
    counters["changed"] += 1
    if counters["changed"] == total:
        changed.set()
    await asyncio.sleep(3600)


async def run_proxies(port: int, proxies: int, clusters: int) -> None:
    names = [cluster_name(i) for i in range(clusters)]
    synced, changed = asyncio.Event(), asyncio.Event()
    counters = {"synced": 0, "changed": 0}
    options = [("grpc.max_receive_message_length", -1)]
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        for _ in range(0, proxies, STREAMS_PER_CHANNEL)
    ]
    tasks = [
        asyncio.create_task(
            _proxy(channels[i // STREAMS_PER_CHANNEL], i, names, synced, counters, proxies, changed)
        )
        for i in range(proxies)
    ]
    await synced.wait()
    print(json.dumps({"event": "synced", "t": time.time()}), flush=True)
    await changed.wait()
    print(json.dumps({"event": "changed", "t": time.time()}), flush=True)
    for t in tasks:
        t.cancel()
    for ch in channels:
        await ch.close(grace=None)


# -- the control plane (this process) ----------------------------------------------------------


async def main(proxies: int, clusters: int, namespaces: int) -> None:
    t0 = time.perf_counter()
    gen = ScaleGenerator(clusters, namespaces)
    print(f"built {namespaces} namespaces x {clusters} clusters in {time.perf_counter() - t0:.1f}s")
    registry = CollectorRegistry()
    server = XdsServer(gen, quiet_period=0.01, max_delay=0.1, registry=registry)
    port = await server.start()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        str(port),
        "--proxies",
        str(proxies),
        "--clusters",
        str(clusters),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    started = time.time()
    line = json.loads(await child.stdout.readline())
    print(
        f"initial sync of {proxies} proxies (CDS+EDS, {clusters} each): {line['t'] - started:.2f}s"
    )
    gen.change()
    changed_at = time.time()
    server.notify_change()
    line = json.loads(await child.stdout.readline())
    push = registry.get_sample_value("pilotfish_xds_push_seconds_sum")
    print(
        f"change -> all {proxies} proxies received full CDS + 1 EDS: {line['t'] - changed_at:.2f}s "
        f"(server push planning {push:.2f}s, includes {0.01:.2f}s quiet period)"
    )
    await child.wait()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"control plane peak RSS: {rss_mb:.0f} MB")
    await server.close(grace=0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxies", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=3000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--client", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(run_proxies(args.client, args.proxies, args.clusters))
    else:
        asyncio.run(main(args.proxies, args.clusters, args.namespaces))
