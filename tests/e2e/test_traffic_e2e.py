"""Protocols and egress on a transparent mesh brought up with `pilotfish up`.

Every observation is made by a client inside the mesh: a program run in the
``sleep`` pod's network namespace, whose connections its sidecar captures, to
services whose own sidecars capture the inbound side. So each call crosses
two sidecars (or the client's sidecar and the egress gateway).

Two meshes run one after the other on the same bridge (each class has its
own): the ``demo`` profile (with the egress gateway, outbound traffic
``ALLOW_ANY``), and a ``minimal`` one whose mesh config says
``outboundTrafficPolicy.mode: REGISTRY_ONLY``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2ekit import (
    E2EMesh,
    free_port,
    host_leftovers,
    http_get,
    poll,
    processes_mentioning,
    require_root,
)
from prometheus_client.parser import text_string_to_metric_families
from traffickit import (
    APPS,
    BRIDGE,
    BRIDGE_IP,
    EXTERNAL_HOST,
    EXTERNAL_IP,
    POD_CIDR,
    SERVICE_CIDR,
    ExternalServer,
    Manifests,
    gateway_stat,
    in_pod,
    sidecar_config,
)

from lanes import lane_cidr

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(300)]

CLIENT = "sleep-0"
EGRESS = "istio-egressgateway"

# Each program reads its input as JSON on stdin and prints JSON.
GRPC_CALLS = """
import collections, json, os, sys
os.environ["GRPC_DNS_RESOLVER"] = "native"  # the pod's /etc/hosts names the services
import grpc
from pilotfish.samples import grpc_echo
n = json.load(sys.stdin)
with grpc.insecure_channel("grpc-echo:7070") as channel:
    answers = [grpc_echo.call("", channel=channel) for _ in range(n)]
print(json.dumps(dict(collections.Counter(a["version"] for a in answers))))
"""

TCP_CONNECTIONS = """
import collections, json, sys
from pilotfish.samples import tcp_echo
n = json.load(sys.stdin)
versions = collections.Counter()
for i in range(n):
    greeting, echoed = tcp_echo.exchange("tcp-echo", 9000, f"line {i}")
    assert echoed == f"line {i}", (i, echoed)
    assert greeting.service == "tcp-echo", greeting
    versions[greeting.version] += 1
print(json.dumps(dict(versions)))
"""

WEBSOCKET = """
import asyncio, json, sys
import aiohttp
async def main():
    messages = json.load(sys.stdin)
    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.ws_connect("http://echo:8080/ws") as ws:
            echoed = []
            for m in messages:
                await ws.send_str(m)
                echoed.append(await ws.receive_str(timeout=5))
            await ws.send_bytes(b"\\x00\\xffbinary")
            binary = (await ws.receive_bytes(timeout=5)).hex()
            await ws.send_str("identity")
            who = await ws.receive_json(timeout=5)
    print(json.dumps({"echoed": echoed, "binary": binary, "who": who}))
asyncio.run(main())
"""

HTTP_GETS = """
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
out = []
for url, headers in json.load(sys.stdin):
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            out.append([resp.status, resp.read().decode("utf-8", "replace")])
    except urllib.error.HTTPError as exc:
        out.append([exc.code, exc.read().decode("utf-8", "replace")])
    except OSError as exc:
        out.append([None, repr(exc)])
print(json.dumps(out))
"""


def http_gets(mesh: E2EMesh, *requests: tuple[str, dict[str, str]]) -> list[tuple[int | None, str]]:
    return [(s, b) for s, b in in_pod(mesh, CLIENT, HTTP_GETS, [list(r) for r in requests])]


def body(reply: tuple[int | None, str]) -> dict[str, Any]:
    assert reply[0] == 200, reply
    return dict(json.loads(reply[1]))


def wait_for_config(mesh: E2EMesh, resource: str, *needles: str) -> None:
    """Until the client's sidecar holds config mentioning every needle, with no
    cluster still warming (a new or changed cluster waits for its endpoints)."""

    def arrived() -> bool:
        text = sidecar_config(mesh, CLIENT, resource)
        return all(n in text for n in needles) and (
            mesh.envoy_stat(CLIENT, "cluster_manager.warming_clusters") == 0
        )

    poll(arrived, f"{needles} in {CLIENT}'s {resource}", deadline=30)


def within_4_sigma(hits: int, n: int, p: float) -> bool:
    sd = math.sqrt(p * (1 - p) / n)
    return abs(hits / n - p) <= 4 * sd


def _run_mesh(
    tmp: Path, manifests: list[Path], profile: str, extra: tuple[str, ...] = ()
) -> Iterator[E2EMesh]:
    mesh = E2EMesh(
        tmp / "state",
        "transparent",
        free_port(),
        free_port(),
        free_port(),
        BRIDGE,
        pod_cidr=POD_CIDR,
        service_cidr=SERVICE_CIDR,
        explicit_cidr=lane_cidr("127.79.242.0/24"),
        extra_up_args=extra,
    )
    try:
        mesh.up(*manifests, profile=profile)
        yield mesh
    finally:
        mesh.cli("down", check=False)
        assert host_leftovers(BRIDGE) == []
        assert processes_mentioning(str(mesh.state_dir)) == []


# -- the demo mesh: protocols, load balancing, egress gateway -------------------------------


@pytest.fixture(scope="class")
def demo_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    require_root()
    tmp = tmp_path_factory.mktemp("traffic-demo")
    apps = tmp / "apps.yaml"
    apps.write_text(APPS)
    yield from _run_mesh(tmp, [apps], "demo")


@pytest.fixture(scope="class")
def external(demo_mesh: E2EMesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with ExternalServer(tmp_path_factory.mktemp("external") / "external.log"):
        yield


@pytest.fixture
def manifests(demo_mesh: E2EMesh, tmp_path: Path) -> Iterator[Manifests]:
    with Manifests(demo_mesh, tmp_path) as applied:
        yield applied


SUBSETS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {app}, namespace: default}}
spec:
  host: {app}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""


MESSAGE_METRICS = ("istio_request_messages_total", "istio_response_messages_total")


def _grpc_messages(mesh: E2EMesh, pod: str, metric: str) -> float:
    """``metric`` summed over the gRPC samples of ``pod``'s proxy (15090)."""
    status, body = http_get(f"http://{mesh.pod_ip(pod)}:15090/stats/prometheus")
    assert status == 200, (pod, body[:200])
    return sum(
        s.value
        for family in text_string_to_metric_families(body.decode("utf-8"))
        for s in family.samples
        if s.name == metric and s.labels.get("request_protocol") == "grpc"
    )


class TestDemoMesh:
    def test_grpc_weighted_split_over_http2(self, demo_mesh: E2EMesh, manifests: Manifests) -> None:
        mesh = demo_mesh
        manifests.apply("grpc-subsets", SUBSETS.format(app="grpc-echo"))
        manifests.apply(
            "grpc-split",
            """\
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: grpc-echo, namespace: default}
            spec:
              hosts: [grpc-echo]
              http:
              - route:
                - {destination: {host: grpc-echo, subset: v1}, weight: 80}
                - {destination: {host: grpc-echo, subset: v2}, weight: 20}
            """,
        )
        wait_for_config(
            mesh,
            "dynamic_route_configs",
            "outbound|7070|v1|grpc-echo.default.svc.cluster.local",
            "outbound|7070|v2|grpc-echo.default.svc.cluster.local",
        )
        client_h2 = "http.outbound_0.0.0.0_7070.downstream_cx_http2_total"
        client_h1 = "http.outbound_0.0.0.0_7070.downstream_cx_http1_total"
        server_rq = "http.inbound|7070||.downstream_rq_http2_total"
        server_h1 = "http.inbound|7070||.downstream_cx_http1_total"
        servers = {"v1": "grpc-echo-v1-0", "v2": "grpc-echo-v2-0"}
        before = {
            "h2": mesh.envoy_stat(CLIENT, client_h2),
            "h1": mesh.envoy_stat(CLIENT, client_h1),
            **{v: mesh.envoy_stat(pod, server_rq) for v, pod in servers.items()},
        }
        messages_before = {
            (pod, metric): _grpc_messages(mesh, pod, metric)
            for pod in (CLIENT, *servers.values())
            for metric in MESSAGE_METRICS
        }
        n = 200
        counts = in_pod(mesh, CLIENT, GRPC_CALLS, n)
        assert set(counts) == {"v1", "v2"}, counts
        assert within_4_sigma(counts["v1"], n, 0.8), counts
        # One HTTP/2 connection from the app into its sidecar ...
        assert mesh.envoy_stat(CLIENT, client_h2) - before["h2"] == 1
        assert mesh.envoy_stat(CLIENT, client_h1) == before["h1"]
        # ... and every call arrived over HTTP/2 at the sidecar of the version that answered.
        for version, pod in servers.items():
            assert mesh.envoy_stat(pod, server_rq) - before[version] == counts[version]
            assert mesh.envoy_stat(pod, server_h1) == 0

        # Istio's gRPC message counters: one message each way per unary call, at
        # the client's sidecar (source) and at each server's (destination).
        def moved(pod: str, metric: str) -> float:
            return _grpc_messages(mesh, pod, metric) - messages_before[(pod, metric)]

        poll(
            lambda: all(moved(CLIENT, m) >= n for m in MESSAGE_METRICS),
            "the client sidecar to count the gRPC messages",
            deadline=20,
        )
        for metric in MESSAGE_METRICS:
            assert moved(CLIENT, metric) == n
            for version, pod in servers.items():
                assert moved(pod, metric) == counts[version], (pod, metric)

    def test_tcp_weighted_split_with_a_server_first_protocol(
        self, demo_mesh: E2EMesh, manifests: Manifests
    ) -> None:
        mesh = demo_mesh
        manifests.apply("tcp-subsets", SUBSETS.format(app="tcp-echo"))
        manifests.apply(
            "tcp-split",
            """\
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: tcp-echo, namespace: default}
            spec:
              hosts: [tcp-echo]
              tcp:
              - match: [{port: 9000}]
                route:
                - {destination: {host: tcp-echo, port: {number: 9000}, subset: v1}, weight: 50}
                - {destination: {host: tcp-echo, port: {number: 9000}, subset: v2}, weight: 50}
            """,
        )
        wait_for_config(
            mesh,
            "dynamic_listeners",
            "outbound|9000|v1|tcp-echo.default.svc.cluster.local",
            "outbound|9000|v2|tcp-echo.default.svc.cluster.local",
        )
        inbound = "tcp.inbound|9000||.downstream_cx_total"
        servers = {"v1": "tcp-echo-v1-0", "v2": "tcp-echo-v2-0"}
        before = {v: mesh.envoy_stat(pod, inbound) for v, pod in servers.items()}
        n = 200
        # Each connection reads the greeting before sending anything: the
        # sidecars must not wait for client bytes to pick a protocol.
        counts = in_pod(mesh, CLIENT, TCP_CONNECTIONS, n)
        assert set(counts) == {"v1", "v2"}, counts
        assert within_4_sigma(counts["v1"], n, 0.5), counts
        for version, pod in servers.items():
            assert mesh.envoy_stat(pod, inbound) - before[version] == counts[version]

    def test_websocket_echoes_through_two_sidecars(self, demo_mesh: E2EMesh) -> None:
        mesh = demo_mesh
        client_upgrades = "http.outbound_0.0.0.0_8080.downstream_cx_upgrades_total"
        server_upgrades = "http.inbound|8080||.downstream_cx_upgrades_total"
        servers = ("echo-0", "echo-1", "echo-2")
        before_client = mesh.envoy_stat(CLIENT, client_upgrades)
        before = {pod: mesh.envoy_stat(pod, server_upgrades) for pod in servers}
        messages = [f"message {i}" for i in range(5)]
        got = in_pod(mesh, CLIENT, WEBSOCKET, messages)
        assert got["echoed"] == messages
        assert got["binary"] == b"\x00\xffbinary".hex()
        assert got["who"]["service"] == "echo"
        answered = got["who"]["hostname"]
        assert answered in servers
        assert mesh.envoy_stat(CLIENT, client_upgrades) - before_client == 1
        for pod in servers:
            expected = 1 if pod == answered else 0
            assert mesh.envoy_stat(pod, server_upgrades) - before[pod] == expected, pod

    def test_consistent_hash_on_a_header_sticks_per_value(
        self, demo_mesh: E2EMesh, manifests: Manifests
    ) -> None:
        mesh = demo_mesh
        manifests.apply(
            "echo-hash",
            """\
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: echo, namespace: default}
            spec:
              host: echo
              trafficPolicy:
                loadBalancer:
                  consistentHash: {httpHeaderName: x-user}
            """,
        )
        # The existing cluster changes its policy: it is replaced only once
        # its endpoints came again (no cluster left warming).
        wait_for_config(mesh, "dynamic_active_clusters", "RING_HASH")
        wait_for_config(mesh, "dynamic_route_configs", '"header_name": "x-user"')
        users = [f"user-{i}" for i in range(12)]
        requests = [("http://echo:8080/", {"x-user": u}) for u in users for _ in range(20)]
        replies = http_gets(mesh, *requests)
        backends: dict[str, set[str]] = {u: set() for u in users}
        for (_, headers), reply in zip(requests, replies, strict=True):
            backends[headers["x-user"]].add(body(reply)["hostname"])
        assert all(len(b) == 1 for b in backends.values()), backends
        spread = set().union(*backends.values())
        assert len(spread) >= 2, backends
        assert spread <= {"echo-0", "echo-1", "echo-2"}

    def test_unknown_host_passes_through_under_allow_any(
        self, demo_mesh: E2EMesh, external: None
    ) -> None:
        # The baseline the REGISTRY_ONLY mesh below is compared to.
        reply = http_gets(demo_mesh, (f"http://{EXTERNAL_IP}/", {"Host": "unknown.pilotfish.test"}))
        answer = body(reply[0])
        assert answer["service"] == "external"
        assert answer["remote"] == demo_mesh.pod_ip(CLIENT)  # straight from the pod

    def test_egress_through_the_egress_gateway(
        self, demo_mesh: E2EMesh, external: None, manifests: Manifests
    ) -> None:
        mesh = demo_mesh
        gateway_host = "istio-egressgateway.istio-system.svc.cluster.local"
        manifests.apply(
            "egress",
            f"""\
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {{name: external-svc, namespace: default}}
            spec:
              hosts: [{EXTERNAL_HOST}]
              addresses: [{EXTERNAL_IP}]
              location: MESH_EXTERNAL
              resolution: STATIC
              ports:
              - {{number: 80, name: http, protocol: HTTP}}
              endpoints:
              - address: {EXTERNAL_IP}
            ---
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: {{name: istio-egressgateway, namespace: default}}
            spec:
              selector: {{istio: egressgateway}}
              servers:
              # The gateway listens on its Service's targetPort (http2 80 -> 8080).
              - port: {{number: 8080, name: http, protocol: HTTP}}
                hosts: [{EXTERNAL_HOST}]
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {{name: egressgateway-for-external, namespace: default}}
            spec:
              host: {gateway_host}
              subsets:
              - name: external
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {{name: external-through-egress-gateway, namespace: default}}
            spec:
              hosts: [{EXTERNAL_HOST}]
              gateways: [istio-egressgateway, mesh]
              http:
              - match: [{{gateways: [mesh], port: 80}}]
                route:
                - destination: {{host: {gateway_host}, subset: external, port: {{number: 80}}}}
                  weight: 100
              - match: [{{gateways: [istio-egressgateway], port: 8080}}]
                route:
                - destination: {{host: {EXTERNAL_HOST}, port: {{number: 80}}}}
                  weight: 100
            """,
        )
        url = f"http://{EXTERNAL_HOST}/"

        def via_gateway() -> bool:
            answer = body(http_gets(mesh, (url, {}))[0])
            # The gateway runs in the host's network: it connects from the bridge.
            return bool(answer["remote"] == BRIDGE_IP)

        poll(via_gateway, "requests to leave through the egress gateway", deadline=30)
        at_gateway = f"cluster.outbound|80||{EXTERNAL_HOST}.upstream_rq_200"
        at_client = f"cluster.outbound|80|external|{gateway_host}.upstream_rq_200"
        before = (gateway_stat(mesh, EGRESS, at_gateway), mesh.envoy_stat(CLIENT, at_client))
        n = 10
        answers = [body(r) for r in http_gets(mesh, *[(url, {})] * n)]
        assert {a["service"] for a in answers} == {"external"}
        assert {a["remote"] for a in answers} == {BRIDGE_IP}
        assert {a["headers"]["Host"] for a in answers} == {EXTERNAL_HOST}
        assert gateway_stat(mesh, EGRESS, at_gateway) - before[0] == n
        assert mesh.envoy_stat(CLIENT, at_client) - before[1] == n


# -- REGISTRY_ONLY: a mesh of its own ------------------------------------------------------

SERVICE_ENTRY = f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external-svc, namespace: default}}
spec:
  hosts: [{EXTERNAL_HOST}]
  addresses: [{EXTERNAL_IP}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  endpoints:
  - address: {EXTERNAL_IP}
---
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata: {{name: sleep, namespace: default, labels: {{app: sleep}}}}
spec:
  serviceAccount: sleep
  command: [python, -c, "import time; time.sleep(10**9)"]
"""


@pytest.fixture(scope="class")
def registry_only_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    require_root()
    tmp = tmp_path_factory.mktemp("traffic-registry-only")
    config = tmp / "mesh.yaml"
    config.write_text("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
    manifest = tmp / "external.yaml"
    manifest.write_text(SERVICE_ENTRY)
    yield from _run_mesh(tmp, [manifest], "minimal", ("--mesh-config", str(config)))


class TestRegistryOnlyMesh:
    def test_only_registered_hosts_are_reachable(
        self, registry_only_mesh: E2EMesh, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        mesh = registry_only_mesh
        with ExternalServer(tmp_path_factory.mktemp("external-ro") / "external.log"):
            registered, by_address, unknown = http_gets(
                mesh,
                (f"http://{EXTERNAL_HOST}/", {}),
                (f"http://{EXTERNAL_IP}/", {"Host": EXTERNAL_HOST}),
                (f"http://{EXTERNAL_IP}/", {"Host": "unknown.pilotfish.test"}),
            )
        assert body(registered)["service"] == "external"
        assert body(by_address)["service"] == "external"
        # The same server, under a name the mesh does not know: refused by the sidecar.
        assert unknown[0] == 502, unknown
