"""A real Envoy on delta ADS keeps exactly the server's virtual hosts while route
configurations churn the way a gateway's do: a route configuration's virtual hosts
go 0 -> n -> 0 -> m (routes deleted and re-added), quickly and slowly; a new
listener appears with a new route configuration that has virtual hosts at once;
a listener goes away and comes back. After every step Envoy's config dump must
show, per route configuration, the very virtual hosts the generator made (polled
with a deadline), and requests must reach them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from prometheus_client import CollectorRegistry
from test_xds_envoy import (  # noqa: F401  (fixtures)
    SwitchableGenerator,
    backend,
    bootstrap,
    envoy_binary,
    eventually,
    mesh_sets,
    pack,
)

from pilotfish.runtime.ports import free_port
from pilotfish.xds.server import XdsServer, service
from pilotfish.xds.server.delta_stream import DeltaRequest
from pilotfish.xds.types import LISTENER_TYPE, ROUTE_TYPE, VHDS_TYPE, ResourceSet

pytestmark = pytest.mark.integration

# Listener port -> virtual host names of its route configuration ``rc.<port>``.
Layout = dict[int, list[str]]


def listener(port: int) -> bytes:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=f"p{port}")
    hcm.rds.route_config_name = f"rc.{port}"
    hcm.rds.config_source.ads.SetInParent()
    hcm.rds.config_source.resource_api_version = 2  # V3
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    lis = listener_pb2.Listener(name=f"l.{port}")
    lis.address.socket_address.address = "127.0.0.1"
    lis.address.socket_address.port_value = port
    lis.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager"
    ).typed_config.Pack(hcm)
    return pack(lis)


def route_config(port: int, vhosts: list[str]) -> bytes:
    config = route_pb2.RouteConfiguration(name=f"rc.{port}")
    for name in vhosts:
        vhost = config.virtual_hosts.add(name=name, domains=[f"{name}.test"])
        route = vhost.routes.add()
        route.match.prefix = "/"
        route.direct_response.status = 200
        route.direct_response.body.inline_string = f"{port} {name}"
    return pack(config)


def sets_for(base: dict[str, ResourceSet], layout: Layout) -> dict[str, ResourceSet]:
    return {
        **base,
        LISTENER_TYPE: ResourceSet(LISTENER_TYPE, {f"l.{p}": listener(p) for p in layout}),
        ROUTE_TYPE: ResourceSet(
            ROUTE_TYPE, {f"rc.{p}": route_config(p, hosts) for p, hosts in layout.items()}
        ),
    }


@pytest.fixture
def envoy_log(envoy_binary: str, tmp_path: Path) -> Iterator[Callable[[int], Path]]:  # noqa: F811
    """Starts one Envoy on delta ADS; a removed listener drains for 1 s (not 600),
    so its route configuration really goes away within a step."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(xds_port: int) -> Path:
        config = tmp_path / "bootstrap.json"
        config.write_text(json.dumps(bootstrap(xds_port, "DELTA_GRPC")))
        log = tmp_path / "envoy.log"
        args = [envoy_binary, "-c", str(config), "--disable-hot-restart", "--concurrency", "1"]
        args += ["--admin-address-path", str(tmp_path / "admin.txt"), "--drain-time-s", "1"]
        args += ["--drain-strategy", "immediate", "--log-level", "warning"]
        with log.open("wb") as out:
            procs.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT))
        return log

    yield start
    for proc in procs:
        proc.kill()  # nothing of a test Envoy's needs a clean exit
        proc.wait(timeout=10)


class Envoy:
    def __init__(self, http: aiohttp.ClientSession, admin_file: Path) -> None:
        self._http, self._admin_file = http, admin_file

    async def virtual_hosts(self) -> dict[str, set[str]] | None:
        """Route configuration name -> its virtual host names, from the config dump
        (None while Envoy's admin is not up yet)."""
        try:
            address = self._admin_file.read_text().strip()
            url = f"http://{address}/config_dump?resource=dynamic_route_configs"
            async with self._http.get(url) as resp:
                dump: dict[str, Any] = json.loads(await resp.text())
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError):
            return None
        out: dict[str, set[str]] = {}
        for config in dump.get("configs", []):
            route = config.get("route_config", {})
            out[route["name"]] = {vh["name"] for vh in route.get("virtual_hosts", [])}
        return out

    async def answer(self, port: int, host: str) -> str | None:
        try:
            url = f"http://127.0.0.1:{port}/"
            async with self._http.get(url, headers={"Host": f"{host}.test"}) as resp:
                return f"{resp.status} {await resp.text()}"
        except (aiohttp.ClientError, TimeoutError):
            return None


async def test_virtual_hosts_converge_through_route_churn(
    backend: int,  # noqa: F811
    envoy_log: Callable[[int], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests: list[DeltaRequest] = []
    parse = service.delta_request_from_proto

    def recording(request: Any) -> DeltaRequest:
        parsed = parse(request)
        if parsed.type_url == VHDS_TYPE:
            requests.append(parsed)
        return parsed

    monkeypatch.setattr(service, "delta_request_from_proto", recording)
    base = mesh_sets(backend, free_port(), stat_prefix="http")
    p1, p2 = free_port(), free_port()
    generator = SwitchableGenerator(sets_for(base, {p1: ["a", "b"]}))
    server = XdsServer(generator, quiet_period=0.01, max_delay=0.1, registry=CollectorRegistry())
    xds_port = await server.start()
    try:
        log = envoy_log(xds_port)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            envoy = Envoy(http, tmp_path / "admin.txt")
            step = 0

            async def converge(layout: Layout, settle: bool = True) -> None:
                nonlocal step
                step += 1
                generator.sets = sets_for(base, layout)
                server.notify_change()
                if not settle:
                    return
                want = {f"rc.{p}": {f"rc.{p}/{h}" for h in hosts} for p, hosts in layout.items()}
                seen: list[dict[str, set[str]] | None] = [None]

                async def same() -> bool:
                    seen[0] = await envoy.virtual_hosts()
                    return seen[0] == want

                try:
                    await eventually(same, f"step {step}: Envoy has {want}", log, 15)
                except AssertionError as exc:
                    vhds = [st.types.get(VHDS_TYPE) for st in server.status()]
                    detail = f"Envoy had {seen[0]}; VHDS requests {requests}; sent {vhds}"
                    raise AssertionError(f"{exc}\n{detail}") from None
                for port, hosts in layout.items():
                    for host in hosts:
                        body = await envoy.answer(port, host)
                        assert body == f"200 {port} {host}", (step, port, host, body)

            await converge({p1: ["a", "b"]})
            await converge({p1: []})
            await converge({p1: ["c"]})
            await converge({p1: []})
            await converge({p1: ["d", "e"]})
            # Quick toggles, each pushed before Envoy answered the last.
            for _ in range(3):
                await converge({p1: []}, settle=False)
                await converge({p1: ["f"]}, settle=False)
            await converge({p1: []}, settle=False)
            await converge({p1: ["g"]})
            # A new listener whose route configuration has virtual hosts at once.
            await converge({p1: ["g"], p2: ["x", "y"]})
            # Removed, then back with other virtual hosts.
            await converge({p1: ["g"]})
            await converge({p1: ["g"], p2: ["z"]})
            await converge({p1: [], p2: []})
            await converge({p1: ["h"], p2: ["x"]})
    finally:
        await server.close(grace=0)
