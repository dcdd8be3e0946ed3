"""AuthorizationPolicy on a TCP port, enforced by a real sidecar.

The app is a plain TCP echo server behind a sidecar in the explicit (``NONE``)
layout, whose inbound listener ``<ip>:9000`` for the Service port ``tcp-echo``
is dialed straight from the test. A connection the policies refuse is closed by
the network RBAC filter before any byte reaches the app; Envoy's
``tcp.rbac.denied`` counter tells that apart from any other close.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import pytest
from meshkit import Mesh, Proxy, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PORT = 9000

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: tcp-echo, namespace: default}}
spec:
  selector: {{app: tcp-echo}}
  ports: [{{name: tcp-echo, port: {port}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: tcp-echo-v1, namespace: default}}
spec: {{address: {ip}, labels: {{app: tcp-echo}}}}
"""

POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: tcp-policy, namespace: default}}
spec:
  selector: {{matchLabels: {{app: tcp-echo}}}}
  action: {action}
  rules:
  - {rule}
"""


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def exchange(ip: str, payload: bytes) -> bytes:
    """Send ``payload`` and read until the echo is complete or the connection
    closes; returns what came back (``b""``: closed without an echo)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, PORT), 5)
    received = b""
    try:
        writer.write(payload)
        await writer.drain()
        while len(received) < len(payload):
            chunk = await asyncio.wait_for(reader.read(4096), 5)
            if not chunk:
                break
            received += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return received


async def rbac_denied(mesh: Mesh, proxy: Proxy) -> int:
    """Envoy's count of connections closed by the network RBAC filters."""
    assert mesh.session is not None
    url = f"http://{proxy.ip}:{proxy.admin_port}/stats?filter=^tcp\\.rbac\\.denied$"
    async with mesh.session.get(url) as resp:
        found = re.search(r"tcp\.rbac\.denied: (\d+)", await resp.text())
    return int(found.group(1)) if found else 0


async def test_tcp_authorization_through_a_real_sidecar(mesh: Mesh, echo_port: int) -> None:
    ip = mesh.new_ip()
    mesh.write("tcp-echo.yaml", SERVICE.format(ip=ip, port=PORT))
    server = mesh.agent(
        "tcp-echo-v1", ip=ip, labels={"app": "tcp-echo"}, app_ports={PORT: echo_port}
    )
    await mesh.ready(server)
    payload = b"hello over tcp\n"

    async def echoes() -> bool:
        return await exchange(ip, payload) == payload

    async def refused() -> bool:
        before = await rbac_denied(mesh, server)
        received = await exchange(ip, payload)
        return received == b"" and await rbac_denied(mesh, server) > before

    async def expect_refused(action: str, rule: str, what: str) -> None:
        mesh.write("policy.yaml", POLICY.format(action=action, rule=rule))
        await poll(refused, what)
        # Removing the policy opens the port again (the refusal was the policy's).
        (mesh.config_dir / "policy.yaml").unlink()
        await poll(echoes, f"the echo to come back after removing: {what}")

    # No policy: bytes are echoed through the sidecar.
    await poll(echoes, "the echo through the sidecar's inbound TCP listener")

    # ALLOW whose ipBlocks do not cover the caller (127.0.0.0/8): closed.
    await expect_refused(
        "ALLOW", "from: [{source: {ipBlocks: [10.0.0.0/8]}}]", "ALLOW of another network"
    )

    # ALLOW covering the caller: echoed, so the ALLOW filter evaluates the source.
    mesh.write(
        "policy.yaml",
        POLICY.format(action="ALLOW", rule="from: [{source: {ipBlocks: [127.0.0.0/8]}}]"),
    )
    await poll(echoes, "the echo with an ALLOW policy covering 127.0.0.0/8")
    assert await exchange(ip, payload) == payload

    # DENY matching the caller: closed.
    await expect_refused(
        "DENY", "from: [{source: {ipBlocks: [127.0.0.0/8]}}]", "DENY of the caller's network"
    )

    # ALLOW with only a `paths` rule: the rule is dropped for TCP, nothing is allowed.
    await expect_refused("ALLOW", "to: [{operation: {paths: [/]}}]", "ALLOW of an HTTP path")
