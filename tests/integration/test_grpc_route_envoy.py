"""A GRPCRoute at a Gateway API gateway, served by real Envoy to real gRPC servers.

Two versions of a gRPC service (``pilotfish.samples.grpc_echo``) run behind
sidecars; a gateway configured only by a Gateway and a GRPCRoute routes calls
by method and by header, as a gRPC client sees it over one HTTP/2 channel
through the gateway: the header rule wins over the catch-all, a match on the
service alone sends the health service to a backend that does not exist (the
call fails while Echo calls on the same channel go on), and a weighted rule
splits calls.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from meshkit import Mesh, poll

from pilotfish.runtime.ports import free_port
from pilotfish.samples import grpc_echo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {{name: echo-{v}, namespace: default}}
spec:
  selector: {{app: echo, version: {v}}}
  ports: [{{name: grpc, port: 7070, appProtocol: grpc}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: echo-{v}, namespace: default}}
spec: {{address: {ip}, labels: {{app: echo, version: {v}}}}}
"""

ROUTES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: grpc-gw, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: grpc, port: 8080, protocol: HTTP, hostname: "*.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: grpc-gw}]
  hostnames: [echo.example.com]
  rules:
  - matches:
    - method: {service: pilotfish.echo.Echo, method: Call}
      headers: [{name: x-canary, value: "yes"}]
    backendRefs: [{name: echo-v2, port: 7070}]
  - matches:
    - method: {service: grpc.health.v1.Health}
    backendRefs: [{name: no-such-service, port: 7070}]
  - matches:
    - method: {service: pilotfish.echo.Echo, method: Call}
      headers: [{name: x-split, value: "yes"}]
    backendRefs:
    - {name: echo-v1, port: 7070, weight: 1}
    - {name: echo-v2, port: 7070, weight: 1}
  - backendRefs: [{name: echo-v1, port: 7070}]
"""


@pytest.fixture
def grpc_servers() -> Iterator[dict[str, int]]:
    """One grpc_echo server per version on loopback; their ports."""
    servers: list[grpc.Server] = []
    ports: dict[str, int] = {}
    try:
        for version in ("v1", "v2"):
            server, port = grpc_echo.make_server(
                "echo", version, f"echo-{version}", "127.0.0.1", free_port()
            )
            server.start()
            servers.append(server)
            ports[version] = port
        yield ports
    finally:
        for server in servers:
            server.stop(grace=None)


async def test_grpc_route_routes_by_method_header_and_weight(
    mesh: Mesh, grpc_servers: dict[str, int]
) -> None:
    ips = {v: mesh.new_ip() for v in ("v1", "v2")}
    mesh.write("services.yaml", "---\n".join(SERVICES.format(v=v, ip=ip) for v, ip in ips.items()))
    mesh.write("routes.yaml", ROUTES)
    sidecars = [
        mesh.agent(
            f"echo-{v}",
            ip=ips[v],
            labels={"app": "echo", "version": v},
            app_ports={7070: grpc_servers[v]},
        )
        for v in ("v1", "v2")
    ]
    gateway = mesh.agent(
        "grpc-gateway", role="gateway", labels={"gateway.networking.k8s.io/gateway-name": "grpc-gw"}
    )
    for proxy in (*sidecars, gateway):
        await mesh.ready(proxy)

    # One HTTP/2 channel through the gateway for every call, as a client keeps it.
    channel = grpc.insecure_channel(
        f"{gateway.ip}:8080", options=[("grpc.default_authority", "echo.example.com")]
    )
    try:

        def version(*metadata: tuple[str, str]) -> str:
            return str(grpc_echo.call("", channel=channel, metadata=metadata)["version"])

        async def routed() -> bool:
            try:
                return await asyncio.to_thread(version) == "v1"
            except grpc.RpcError:
                return False

        await poll(routed, "the gateway routes gRPC calls to echo-v1")
        assert {await asyncio.to_thread(version) for _ in range(10)} == {"v1"}
        canary = {await asyncio.to_thread(version, ("x-canary", "yes")) for _ in range(10)}
        assert canary == {"v2"}
        # A header value other than the rule's falls through to the catch-all.
        assert await asyncio.to_thread(version, ("x-canary", "no")) == "v1"

        # Every server answers the health check, so only the route can make it fail.
        def health() -> bytes:
            answer: bytes = channel.unary_unary(grpc_echo.HEALTH_METHOD)(b"", timeout=5)
            return answer

        with pytest.raises(grpc.RpcError):
            await asyncio.to_thread(health)
        assert grpc_echo.health(f"127.0.0.1:{grpc_servers['v2']}")  # the servers do answer
        assert await asyncio.to_thread(version) == "v1"

        split = Counter([await asyncio.to_thread(version, ("x-split", "yes")) for _ in range(60)])
        assert set(split) == {"v1", "v2"} and min(split.values()) >= 10, split
    finally:
        channel.close()
