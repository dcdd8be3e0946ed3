"""A real Envoy on incremental (delta) ADS: edits, removals, and a control-plane restart
that Envoy rejoins with ``initial_resource_versions``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2
from prometheus_client import CollectorRegistry
from test_xds_envoy import (  # noqa: F401  (fixtures)
    NODE_ID,
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
from pilotfish.xds.types import (
    ADS_ORDER,
    CLUSTER_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    VHDS_TYPE,
    ResourceSet,
)

pytestmark = pytest.mark.integration

TYPES = ("CDS", "EDS", "LDS", "RDS", "VHDS")


def with_teapot(sets: dict[str, ResourceSet]) -> dict[str, ResourceSet]:
    """``sets`` whose route configuration answers /teapot itself with 418."""
    any_msg = any_pb2.Any.FromString(sets[ROUTE_TYPE].resources["routes"])
    routes = route_pb2.RouteConfiguration()
    any_msg.Unpack(routes)
    vhost = routes.virtual_hosts[0]
    existing = list(vhost.routes)
    del vhost.routes[:]
    teapot = vhost.routes.add()
    teapot.match.prefix = "/teapot"
    teapot.direct_response.status = 418
    vhost.routes.extend(existing)
    return {**sets, ROUTE_TYPE: ResourceSet(ROUTE_TYPE, {"routes": pack(routes)})}


def with_listener(sets: dict[str, ResourceSet], name: str, port: int) -> dict[str, ResourceSet]:
    """``sets`` plus a listener ``name`` on ``port``, a copy of ``http``."""
    lis = listener_pb2.Listener()
    any_pb2.Any.FromString(sets[LISTENER_TYPE].resources["http"]).Unpack(lis)
    lis.name = name
    lis.address.socket_address.port_value = port
    listeners = {**sets[LISTENER_TYPE].resources, name: pack(lis)}
    return {**sets, LISTENER_TYPE: ResourceSet(LISTENER_TYPE, listeners)}


def without_cluster(sets: dict[str, ResourceSet], name: str) -> dict[str, ResourceSet]:
    clusters = {n: b for n, b in sets[CLUSTER_TYPE].resources.items() if n != name}
    return {**sets, CLUSTER_TYPE: ResourceSet(CLUSTER_TYPE, clusters)}


class Admin:
    """Envoy's admin API, found through ``--admin-address-path``."""

    def __init__(self, http: aiohttp.ClientSession, address_file: Path) -> None:
        self._http = http
        self._file = address_file

    async def _get(self, path: str) -> str:
        address = self._file.read_text().strip()
        async with self._http.get(f"http://{address}{path}") as resp:
            assert resp.status == 200, path
            return await resp.text()

    async def stats(self) -> dict[str, int]:
        text = await self._get("/stats?filter=^(control_plane|cluster_manager|listener_manager)")
        out: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    async def dump(self) -> dict[str, Any]:
        return dict(json.loads(await self._get("/config_dump")))

    async def dynamic_names(self, kind: str) -> set[str]:
        """Names of the active dynamic clusters (``clusters``) or listeners (``listeners``)."""
        for config in (await self.dump())["configs"]:
            if kind == "clusters" and "dynamic_active_clusters" in config:
                return {c["cluster"]["name"] for c in config["dynamic_active_clusters"]}
            if kind == "listeners" and "dynamic_listeners" in config:
                return {
                    item["name"] for item in config["dynamic_listeners"] if "active_state" in item
                }
        return set()

    async def ads_api_type(self) -> str:
        for config in (await self.dump())["configs"]:
            if "bootstrap" in config:
                return str(config["bootstrap"]["dynamic_resources"]["ads_config"]["api_type"])
        return ""


def sent(registry: CollectorRegistry) -> dict[str, float]:
    return {
        t: registry.get_sample_value("pilotfish_xds_resources_sent_total", {"type": t}) or 0.0
        for t in TYPES
    }


async def test_envoy_on_delta_xds(
    backend: int,  # noqa: F811
    run_envoy: Callable[..., Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    port, extra_port = free_port(), free_port()
    base = mesh_sets(backend, port, stat_prefix="http")
    generator = SwitchableGenerator(with_listener(base, "extra", extra_port))
    registry = CollectorRegistry()
    server = XdsServer(generator, quiet_period=0.01, max_delay=0.1, registry=registry)
    xds_port = await server.start()
    servers = [server]
    try:
        log = run_envoy(xds_port, "DELTA_GRPC")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            admin = Admin(http, tmp_path / "admin.txt")

            async def status(target: int, path: str) -> int | None:
                try:
                    async with http.get(f"http://127.0.0.1:{target}{path}") as resp:
                        await resp.read()
                        return resp.status
                except (aiohttp.ClientError, TimeoutError):
                    return None

            async def answers(target: int, path: str, code: int) -> bool:
                return await status(target, path) == code

            async def all_acked(srv: XdsServer) -> bool:
                statuses = srv.status()
                return len(statuses) == 1 and all(
                    statuses[0].types[u].synced for u in (*ADS_ORDER, VHDS_TYPE)
                )

            await eventually(lambda: answers(port, "/eds", 200), "traffic via EDS", log)
            await eventually(lambda: answers(extra_port, "/", 200), "extra listener", log)
            await eventually(lambda: all_acked(server), "all four types ACKed", log)
            (st,) = server.status()
            assert st.protocol == "delta"
            assert await admin.ads_api_type() == "DELTA_GRPC"
            stats = await admin.stats()
            assert stats["control_plane.connected_state"] == 1
            cds_updates = stats["cluster_manager.cds.update_success"]
            assert cds_updates >= 1
            # The route configuration names VHDS; its one virtual host comes over VHDS.
            assert sent(registry) == {"CDS": 2, "EDS": 1, "LDS": 2, "RDS": 1, "VHDS": 1}

            # A route edit reaches Envoy, and only that one virtual host is sent.
            generator.sets = with_teapot(with_listener(base, "extra", extra_port))
            server.notify_change()
            await eventually(lambda: answers(port, "/teapot", 418), "route edit applied", log)
            await eventually(lambda: all_acked(server), "route edit ACKed", log)
            assert sent(registry) == {"CDS": 2, "EDS": 1, "LDS": 2, "RDS": 1, "VHDS": 2}

            # Removals: a listener and a cluster go away in Envoy too.
            generator.sets = without_cluster(with_teapot(base), "backend_eds")
            server.notify_change()

            async def removed() -> bool:
                return "extra" not in await admin.dynamic_names(
                    "listeners"
                ) and "backend_eds" not in await admin.dynamic_names("clusters")

            await eventually(removed, "listener and cluster removed", log)
            await eventually(lambda: all_acked(server), "removals ACKed", log)
            assert await admin.dynamic_names("clusters") == {"backend_static"}
            assert await admin.dynamic_names("listeners") == {"http"}
            await eventually(lambda: answers(port, "/eds", 503), "route to the gone cluster", log)
            stats = await admin.stats()
            assert stats["cluster_manager.cds.update_success"] > cds_updates
            assert stats["cluster_manager.cluster_removed"] >= 1
            assert stats["listener_manager.listener_removed"] >= 1
            assert sent(registry)["CDS"] == 2 and sent(registry)["LDS"] == 2  # removals only
            modified = stats["cluster_manager.cluster_modified"]
            added = stats["cluster_manager.cluster_added"]

            # The control plane restarts; while it is down the extra listener comes back.
            await server.close(grace=0)
            generator.sets = with_listener(
                without_cluster(with_teapot(base), "backend_eds"), "extra", extra_port
            )
            started = False
            for _ in range(50):  # the old socket may linger a moment
                registry = CollectorRegistry()
                server = XdsServer(generator, quiet_period=0.01, max_delay=0.1, registry=registry)
                servers.append(server)
                try:
                    started = await server.start(port=xds_port) == xds_port
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            assert started, f"cannot listen on {xds_port} again"

            async def rejoined() -> bool:
                # EDS has no subscribed name left (its only cluster is gone), so
                # Envoy may not ask for it: every type it subscribed must be in sync.
                statuses = server.status()
                if len(statuses) != 1:
                    return False
                types = statuses[0].types
                subscribed = [t for t in types.values() if t.subscribed]
                return {t.type_url for t in subscribed} >= {CLUSTER_TYPE, LISTENER_TYPE} and all(
                    t.synced for t in subscribed
                )

            try:
                await eventually(rejoined, "reconnected and in sync", log, 60)
            except AssertionError as exc:
                detail = json.dumps([s.to_json() for s in server.status()], indent=1)
                raise AssertionError(f"{exc}\nstatus: {detail}") from None
            await eventually(lambda: answers(extra_port, "/", 200), "extra listener back", log)
            # Envoy said what it held: only the listener it lacked was sent.
            assert sent(registry) == {"CDS": 0, "EDS": 0, "LDS": 1, "RDS": 0, "VHDS": 0}
            stats = await admin.stats()
            assert stats["control_plane.connected_state"] == 1
            assert stats["cluster_manager.cluster_modified"] == modified
            assert stats["cluster_manager.cluster_added"] == added
            assert await answers(port, "/teapot", 418)
            assert await answers(port, "/static", 200)
    finally:
        for srv in servers:
            await srv.close(grace=0)
