"""A real Envoy on delta ADS gets route configurations over VHDS: the route
configuration names ``vhds`` and its virtual hosts come as VirtualHost resources.
An edit sends only the virtual host that changed, a removed virtual host is gone
from Envoy, a bad one is NACKed while the others keep serving; over SotW the
same route configuration stays inline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2
from prometheus_client import CollectorRegistry
from test_xds_envoy import (  # noqa: F401  (fixtures)
    SwitchableGenerator,
    backend,
    envoy_binary,
    eventually,
    mesh_sets,
    pack,
    run_envoy,
)

from pilotfish.runtime.ports import free_port
from pilotfish.xds.server import XdsServer
from pilotfish.xds.types import ADS_ORDER, ROUTE_TYPE, VHDS_TYPE, ResourceSet

pytestmark = pytest.mark.integration


def with_vhosts(
    base: dict[str, ResourceSet], extra: dict[str, str], bad: bool = False
) -> dict[str, ResourceSet]:
    """``base`` whose route configuration also has, per name, a virtual host for
    ``<name>.test`` answering its body itself; ``bad`` adds one Envoy rejects."""
    routes = route_pb2.RouteConfiguration()
    any_pb2.Any.FromString(base[ROUTE_TYPE].resources["routes"]).Unpack(routes)
    for name, body in extra.items():
        vhost = routes.virtual_hosts.add(name=name, domains=[f"{name}.test"])
        route = vhost.routes.add()
        route.match.prefix = "/"
        route.direct_response.status = 200
        route.direct_response.body.inline_string = body
    if bad:
        vhost = routes.virtual_hosts.add(name="bad", domains=["bad.test"])
        route = vhost.routes.add()
        route.match.safe_regex.regex = "(("  # not RE2: Envoy rejects it
        route.direct_response.status = 200
    return {**base, ROUTE_TYPE: ResourceSet(ROUTE_TYPE, {"routes": pack(routes)})}


def sent(registry: CollectorRegistry, type_label: str) -> float:
    found = registry.get_sample_value("pilotfish_xds_resources_sent_total", {"type": type_label})
    return found or 0.0


class Probe:
    def __init__(self, http: aiohttp.ClientSession, port: int, admin_file: Path) -> None:
        self._http, self._port, self._admin_file = http, port, admin_file

    async def body(self, host: str) -> str | None:
        try:
            url = f"http://127.0.0.1:{self._port}/"
            async with self._http.get(url, headers={"Host": host}) as resp:
                return f"{resp.status} {await resp.text()}"
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def route_config(self) -> dict[str, Any]:
        address = self._admin_file.read_text().strip()
        url = f"http://{address}/config_dump?resource=dynamic_route_configs"
        async with self._http.get(url) as resp:
            dump = json.loads(await resp.text())
        for config in dump.get("configs", []):
            if config.get("route_config", {}).get("name") == "routes":
                return dict(config["route_config"])
        return {}


async def test_route_edits_reach_envoy_over_vhds(
    backend: int,  # noqa: F811
    run_envoy: Callable[..., Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    port = free_port()
    base = mesh_sets(backend, port, stat_prefix="http")
    generator = SwitchableGenerator(with_vhosts(base, {"a": "A1", "b": "B1"}))
    registry = CollectorRegistry()
    server = XdsServer(generator, quiet_period=0.01, max_delay=0.1, registry=registry)
    xds_port = await server.start()
    try:
        log = run_envoy(xds_port, "DELTA_GRPC")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            probe = Probe(http, port, tmp_path / "admin.txt")

            async def answers(host: str, expected: str) -> bool:
                return (await probe.body(host) or "").startswith(expected)

            async def synced() -> bool:
                statuses = server.status()
                return len(statuses) == 1 and all(
                    statuses[0].types[u].synced for u in (*ADS_ORDER, VHDS_TYPE)
                )

            await eventually(lambda: answers("a.test", "200 A1"), "virtual host a", log)
            await eventually(lambda: answers("other", "200 backend says hi"), "the * host", log)
            await eventually(synced, "every type ACKed, VHDS too", log)
            config = await probe.route_config()
            assert "vhds" in config
            names = {vh["name"] for vh in config["virtual_hosts"]}
            assert names == {"routes/all", "routes/a", "routes/b"}
            assert (sent(registry, "RDS"), sent(registry, "VHDS")) == (1, 3)

            # An edit of one virtual host: that one VirtualHost, no RDS.
            generator.sets = with_vhosts(base, {"a": "A2", "b": "B1"})
            server.notify_change()
            await eventually(lambda: answers("a.test", "200 A2"), "the edit applied", log)
            await eventually(synced, "the edit ACKed", log)
            assert (sent(registry, "RDS"), sent(registry, "VHDS")) == (1, 4)
            assert await answers("b.test", "200 B1")

            # Removal: b.test falls through to the * virtual host.
            generator.sets = with_vhosts(base, {"a": "A2"})
            server.notify_change()
            await eventually(
                lambda: answers("b.test", "200 backend says hi"), "virtual host b removed", log
            )
            await eventually(synced, "the removal ACKed", log)
            config = await probe.route_config()
            assert {vh["name"] for vh in config["virtual_hosts"]} == {"routes/all", "routes/a"}

            # A bad virtual host is NACKed; what Envoy had keeps serving.
            generator.sets = with_vhosts(base, {"a": "A3"}, bad=True)
            server.notify_change()

            async def nacked() -> bool:
                statuses = server.status()
                ts = statuses[0].types.get(VHDS_TYPE) if statuses else None
                return ts is not None and ts.nack_message is not None

            await eventually(nacked, "the bad virtual host NACKed", log)
            (st,) = server.status()
            assert "((" in (st.types[VHDS_TYPE].nack_message or "")
            assert st.types[ROUTE_TYPE].nack_message is None
            assert await answers("a.test", "200 A2")  # the rejected response is not applied
            assert await answers("other", "200 backend says hi")

            # The next good change goes through.
            generator.sets = with_vhosts(base, {"a": "A4"})
            server.notify_change()
            await eventually(lambda: answers("a.test", "200 A4"), "the fix applied", log)
            await eventually(synced, "the fix ACKed", log)
    finally:
        await server.close(grace=0)


async def test_sotw_keeps_virtual_hosts_inline(
    backend: int,  # noqa: F811
    run_envoy: Callable[..., Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    port = free_port()
    generator = SwitchableGenerator(
        with_vhosts(mesh_sets(backend, port, stat_prefix="http"), {"a": "A1"})
    )
    server = XdsServer(generator, quiet_period=0.01, max_delay=0.1, registry=CollectorRegistry())
    xds_port = await server.start()
    try:
        log = run_envoy(xds_port, "GRPC")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            probe = Probe(http, port, tmp_path / "admin.txt")

            async def answers() -> bool:
                return (await probe.body("a.test") or "").startswith("200 A1")

            await eventually(answers, "virtual host a", log)
            config = await probe.route_config()
            assert "vhds" not in config
            assert {vh["name"] for vh in config["virtual_hosts"]} == {"all", "a"}
            (st,) = server.status()
            assert VHDS_TYPE not in st.types
    finally:
        await server.close(grace=0)
