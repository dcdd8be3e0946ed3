"""DestinationRule resilience through a real sidecar: circuit breaking, outlier
ejection and locality failover.

Backends are plain apps on loopback ports, registered by WorkloadEntries with
explicit ports (no server sidecars needed: the client's Envoy is what enforces
the policies under test).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from meshkit import Mesh, Proxy, free_port, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9080}}]
"""

ENTRY = """\
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: default}}
spec:
  address: 127.0.0.1
  ports: {{http: {port}}}
  labels: {{app: {app}}}
  locality: "{locality}"
"""


async def _failing_app(mesh: Mesh) -> int:
    """An app that always answers 500 (a broken replica)."""

    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"version": "broken"}, status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    mesh.apps.append(server)
    assert server.port is not None
    return server.port


def _entry(name: str, app: str, port: int, locality: str = "") -> str:
    return ENTRY.format(name=name, app=app, port=port, locality=locality)


async def _stat(mesh: Mesh, proxy: Proxy, pattern: str) -> int:
    """Sum of the Envoy counters whose names match ``pattern``."""
    assert mesh.session is not None
    url = f"http://{proxy.ip}:{proxy.admin_port}/stats"
    async with mesh.session.get(url, params={"filter": pattern}) as resp:
        text = await resp.text()
    return sum(int(v) for v in re.findall(r": (\d+)$", text, flags=re.M))


async def _client(mesh: Mesh, locality: str = "") -> Proxy:
    client = mesh.agent("client", labels={"app": "client"}, locality=locality)
    await mesh.ready(client)
    return client


async def _until_routable(mesh: Mesh, client: Proxy, host: str) -> None:
    async def routable() -> bool:
        status, _ = await mesh.call(client, host)
        return status != 404

    await poll(routable, f"{host} to be routable")


async def test_connection_pool_limit_overflows(mesh: Mesh) -> None:
    port = await mesh.app("slow", "v1")
    mesh.write(
        "slow.yaml",
        SERVICE.format(name="slow")
        + _entry("slow-1", "slow", port)
        + """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: slow, namespace: default}
spec:
  host: slow
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 1}
""",
    )
    client = await _client(mesh)
    await _until_routable(mesh, client, "slow:9080")

    async def limits_applied() -> bool:
        return await _stat(mesh, client, r"slow.*circuit_breakers.default.remaining_pending") == 1

    await poll(limits_applied, "the pool limits to reach Envoy")
    before = await _stat(mesh, client, r"slow.*upstream_rq_pending_overflow")
    results = await asyncio.gather(
        *(mesh.call(client, "slow:9080", "/?delay=500") for _ in range(20))
    )
    statuses = [status for status, _ in results]
    assert statuses.count(503) > 0, statuses
    assert statuses.count(200) > 0, statuses
    assert await _stat(mesh, client, r"slow.*upstream_rq_pending_overflow") > before


OUTLIER = """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: default}}
spec:
  host: {name}
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
{extra}"""


async def _versions(mesh: Mesh, client: Proxy, host: str, n: int) -> list[Any]:
    out = []
    for _ in range(n):
        status, body = await mesh.call(client, host)
        out.append(body["version"] if isinstance(body, dict) else status)
    return out


async def test_outlier_detection_ejects_failing_endpoint(mesh: Mesh) -> None:
    bad, good = await _failing_app(mesh), await mesh.app("flaky", "healthy")
    mesh.write(
        "flaky.yaml",
        SERVICE.format(name="flaky")
        + _entry("flaky-bad", "flaky", bad)
        + _entry("flaky-good", "flaky", good)
        + OUTLIER.format(name="flaky", extra=""),
    )
    client = await _client(mesh)
    await _until_routable(mesh, client, "flaky:9080")

    async def only_healthy() -> bool:
        return await _versions(mesh, client, "flaky:9080", 10) == ["healthy"] * 10

    await poll(only_healthy, "the failing endpoint to be ejected")
    assert await _stat(mesh, client, r"flaky.*outlier_detection.ejections_enforced_total") >= 1


async def test_locality_failover_moves_traffic_to_next_zone(mesh: Mesh) -> None:
    bad, good = await _failing_app(mesh), await mesh.app("zonal", "z2")
    mesh.write(
        "zonal.yaml",
        SERVICE.format(name="zonal")
        + _entry("zonal-z1", "zonal", bad, "r1/z1")
        + _entry("zonal-z2", "zonal", good, "r1/z2")
        + OUTLIER.format(
            name="zonal",
            extra="    loadBalancer:\n      localityLbSetting: {enabled: true}\n",
        ),
    )
    client = await _client(mesh, locality="r1/z1")

    # Envoy got the endpoints with priorities for its locality: own zone first.
    async def priorities() -> dict[int, int]:
        assert mesh.session is not None
        url = f"http://{client.ip}:{client.admin_port}/clusters"
        async with mesh.session.get(url) as resp:
            text = await resp.text()
        found = re.findall(r"zonal\.default[^:]*::127\.0\.0\.1:(\d+)::priority::(\d+)", text)
        return {int(port): int(prio) for port, prio in found}

    assert await poll(priorities, "zonal endpoints in Envoy") == {bad: 0, good: 1}

    # The proxy's own zone is tried first: the broken local replica answers.
    async def local_first() -> bool:
        status, _ = await mesh.call(client, "zonal:9080")
        return status == 500

    await poll(local_first, "the local zone to be preferred")

    # Once it is ejected, everything fails over to the other zone.
    async def failed_over() -> bool:
        return await _versions(mesh, client, "zonal:9080", 10) == ["z2"] * 10

    await poll(failed_over, "traffic to fail over to r1/z2")
