"""Two control-plane replicas, one real Envoy: killing the proxy's replica loses nothing.

Two ``pilotfish control-plane`` processes watch one configuration directory
and share one CA directory (one root, one trust bundle); each serves xDS and
the CA on its own ports. One agent is given both replicas' addresses: its
certificate comes from whichever CA answers, its Envoy opens ADS over mTLS to
one of them. The replica the proxy is connected to (read from the replicas'
``/debug/syncz``) is SIGKILLed while a bounded client sends 20 requests a
second for 10 s through the proxy: every request succeeds, the proxy is
connected and in sync with the other replica within ``RECONNECT_BOUND``
seconds (also when the replica hangs instead: SIGSTOP), Envoy neither
drained nor changed a listener or cluster (the survivor's configuration is
the same), and a configuration change made
afterwards reaches the proxy through the survivor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from lanes import LANE
from pilotfish.runtime.ports import free_port
from pilotfish.samples.echo import EchoIdentity, make_app
from polling import DEFAULT_IGNORE, apoll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

API_TOKEN = "replica-test-token"
CA_TOKEN = "client-ca-token"
PROXY_ID = "client.default"
# Generous. Measured: 0.1-0.3 s after SIGKILL (the connection closes at once;
# the ADS retry back-off is 0.25-2 s and the dead replica is ejected after its
# first refused connection); after SIGSTOP the unanswered keepalive PING
# (every 5 s, 5 s timeout) ends the stream within about 10 s.
RECONNECT_BOUND = 15.0
RATE = 20  # requests per second
LOAD_SECONDS = 10.0
IGNORE = (*DEFAULT_IGNORE, aiohttp.ClientError)

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: echo-1, namespace: default}}
spec:
  address: 127.0.0.1
  labels: {{app: echo}}
  ports: {{http: {port}}}
"""

ROUTE_WITH_HEADER = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo}}]
    headers: {response: {set: {x-served-after-failover: "yes"}}}
"""


@dataclass
class Replica:
    name: str
    xds_port: int
    http_port: int
    ca_port: int
    xds_mtls_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def hang(self) -> None:
        """Stop the process: its sockets stay open and the kernel still accepts
        connections, but nothing answers (a replica stuck, or its host partitioned)."""
        os.killpg(self.process.pid, signal.SIGSTOP)


def _start_replica(name: str, root: Path, config: Path, ca_dir: Path, tokens: Path) -> Replica:
    ports = [free_port() for _ in range(4)]
    xds, http, ca, mtls = ports
    log = root / f"{name}.log"
    args = [
        sys.executable,
        "-m",
        "pilotfish.cli.main",
        "control-plane",
        "--config",
        str(config),
        "--xds-port",
        str(xds),
        "--http-port",
        str(http),
        "--secure-port",
        str(ca),
        "--xds-mtls-port",
        str(mtls),
        "--ca-dir",
        str(ca_dir),
        "--ca-tokens",
        str(tokens),
        "--api-token",
        API_TOKEN,
        "--push-quiet-period",
        "0.05",
        "--push-max-delay",
        "0.2",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=root
        )
    return Replica(name, xds, http, ca, mtls, process, log)


@dataclass
class Setup:
    root: Path
    config: Path
    replicas: list[Replica]
    agent: subprocess.Popen[bytes]
    agent_log: Path
    ip: str
    admin_port: int
    health_port: int
    session: aiohttp.ClientSession

    def logs(self) -> str:
        parts = [f"--- {r.name}\n{r.log.read_text()[-3000:]}" for r in self.replicas]
        parts.append(f"--- agent\n{self.agent_log.read_text()[-4000:]}")
        return "\n".join(parts)

    async def syncz(self, replica: Replica) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        url = f"http://127.0.0.1:{replica.http_port}/debug/syncz"
        async with self.session.get(url, headers=headers) as resp:
            resp.raise_for_status()
            rows: list[dict[str, Any]] = await resp.json()
            return rows

    async def in_sync_on(self, replica: Replica) -> bool:
        """Whether the proxy's stream on ``replica`` has ACKed everything it was sent."""
        for row in await self.syncz(replica):
            if row["proxy_id"] != PROXY_ID:
                continue
            types = [t for t in row["types"].values() if t["subscribed"]]
            return bool(types) and all(
                t["sent_version"] and t["acked_version"] == t["sent_version"] for t in types
            )
        return False

    async def envoy_stats(self) -> dict[str, int]:
        url = f"http://{self.ip}:{self.admin_port}/stats?format=json"
        async with self.session.get(url) as resp:
            doc = await resp.json(content_type=None)
        return {s["name"]: s["value"] for s in doc["stats"] if "value" in s}

    async def call(self) -> tuple[int, dict[str, str]]:
        headers = {"Host": "echo:9080"}
        async with self.session.get(f"http://{self.ip}:15001/", headers=headers) as resp:
            await resp.read()
            return resp.status, dict(resp.headers)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    config, ca_dir = tmp_path / "config", tmp_path / "ca"
    config.mkdir()
    app = TestServer(make_app(EchoIdentity("echo", "v1", "echo-1")), host="127.0.0.1")
    await app.start_server()
    assert app.port is not None
    (config / "echo.yaml").write_text(SERVICE.format(port=app.port))
    tokens = tmp_path / "ca-tokens.yaml"
    tokens.write_text(json.dumps([{"token": CA_TOKEN, "namespace": "default"}]))
    tokens.chmod(0o600)
    token_file = tmp_path / "client-token"
    token_file.write_text(CA_TOKEN)
    token_file.chmod(0o600)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    replicas: list[Replica] = []
    agent: subprocess.Popen[bytes] | None = None
    try:
        # Started at once: the replicas must agree on one root between them.
        replicas = [_start_replica(n, tmp_path, config, ca_dir, tokens) for n in ("cp-1", "cp-2")]
        for replica in replicas:
            await _wait_ready(session, replica)
        ip = f"127.{100 + LANE}.251.2"
        admin, health = free_port(ip), free_port(ip)
        agent_log = tmp_path / "agent.log"
        args = [
            sys.executable,
            "-m",
            "pilotfish.cli.agent",
            "--name",
            "client",
            "--namespace",
            "default",
            "--ip",
            ip,
            "--admin-address",
            ip,
            "--health-bind",
            ip,
            "--admin-port",
            str(admin),
            "--health-port",
            str(health),
            "--stats-port",
            "0",
            "--concurrency",
            "1",
            "--drain-duration",
            "1",
            "--work-dir",
            str(tmp_path / "agent"),
            "--xds-address",
            ",".join(f"127.0.0.1:{r.xds_port}" for r in replicas),
            "--xds-secure-address",
            ",".join(f"127.0.0.1:{r.xds_mtls_port}" for r in replicas),
            "--ca-address",
            ",".join(f"127.0.0.1:{r.ca_port}" for r in replicas),
            "--ca-token-file",
            str(token_file),
            "--root-cert-file",
            str(ca_dir / "root-cert.pem"),
        ]
        with open(agent_log, "wb") as out:
            agent = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        yield Setup(tmp_path, config, replicas, agent, agent_log, ip, admin, health, session)
    finally:
        if agent is not None and agent.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(timeout=10)
        for replica in replicas:
            replica.kill()
        await session.close()
        await app.close()


async def _wait_ready(session: aiohttp.ClientSession, replica: Replica) -> None:
    async def ready() -> bool:
        if not replica.alive():
            raise AssertionError(f"{replica.name} exited:\n{replica.log.read_text()[-3000:]}")
        async with session.get(f"http://127.0.0.1:{replica.http_port}/ready") as resp:
            return resp.status == 200

    await apoll(ready, f"{replica.name} ready", 30.0, ignore=IGNORE)


def _context(setup: Setup) -> Callable[[], str]:
    return setup.logs


async def _load(setup: Setup, started: Callable[[], None]) -> list[tuple[float, int | str]]:
    """``RATE`` requests a second for ``LOAD_SECONDS``, each on its schedule; (time, status)."""
    results: list[tuple[float, int | str]] = []
    begin = time.monotonic()

    async def one(at: float) -> None:
        await asyncio.sleep(max(0.0, begin + at - time.monotonic()))
        try:
            status, _ = await setup.call()
            results.append((at, status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            results.append((at, f"{type(exc).__name__}: {exc}"))

    tasks = [asyncio.create_task(one(i / RATE)) for i in range(int(RATE * LOAD_SECONDS))]
    started()
    await asyncio.gather(*tasks)
    return sorted(results)


def _changes(before: dict[str, int], after: dict[str, int]) -> Iterator[str]:
    for name in (
        "listener_manager.listener_modified",
        "listener_manager.listener_removed",
        "listener_manager.total_listeners_draining",
        "cluster_manager.cluster_modified",
        "cluster_manager.cluster_removed",
    ):
        if after.get(name, 0) != before.get(name, 0):
            yield f"{name}: {before.get(name, 0)} -> {after.get(name, 0)}"


@pytest.mark.parametrize("how", ["sigkill", "sigstop"])
async def test_killing_the_proxys_replica_loses_no_request(setup: Setup, how: str) -> None:
    context = _context(setup)

    async def ready() -> bool:
        if setup.agent.poll() is not None:
            raise AssertionError("agent exited\n" + setup.logs())
        url = f"http://{setup.ip}:{setup.health_port}/healthz/ready"
        async with setup.session.get(url) as resp:
            return resp.status == 200

    await apoll(ready, "agent ready", 60.0, ignore=IGNORE, context=context)

    async def serves() -> bool:
        status, _ = await setup.call()
        return status == 200

    await apoll(serves, "traffic through the proxy", 30.0, ignore=IGNORE, context=context)

    async def connected() -> list[Replica]:
        return [r for r in setup.replicas if await setup.in_sync_on(r)]

    [serving] = await apoll(connected, "the proxy in sync on one replica", 30.0, ignore=IGNORE)
    [survivor] = [r for r in setup.replicas if r is not serving]
    assert PROXY_ID not in [row["proxy_id"] for row in await setup.syncz(survivor)]
    before = await setup.envoy_stats()

    killed_at: list[float] = []

    def kill_soon() -> None:
        async def later() -> None:
            await asyncio.sleep(2.0)  # the load is running by then
            killed_at.append(time.monotonic())
            serving.kill() if how == "sigkill" else serving.hang()

        asyncio.get_running_loop().create_task(later())

    load = asyncio.create_task(_load(setup, kill_soon))

    async def reconnected() -> float | None:
        if not killed_at:
            return None
        return time.monotonic() - killed_at[0] if await setup.in_sync_on(survivor) else None

    reconnect_seconds = await apoll(
        reconnected,
        f"the proxy in sync on {survivor.name}",
        RECONNECT_BOUND + 5.0,
        interval=0.05,
        ignore=IGNORE,
        context=context,
    )
    results = await load
    failed = [(at, status) for at, status in results if status != 200]
    print(
        f"\nreconnect after {how} of {serving.name}: {reconnect_seconds:.2f}s; "
        f"{len(results)} requests, {len(failed)} failed"
    )
    assert len(results) == RATE * LOAD_SECONDS
    assert not failed, failed[:10]
    assert reconnect_seconds <= RECONNECT_BOUND

    # Over mTLS with the certificate one replica's CA issued: the survivor trusts it.
    [row] = [row for row in await setup.syncz(survivor) if row["proxy_id"] == PROXY_ID]
    assert row["identity"] == "spiffe://cluster.local/ns/default/sa/default"

    # Envoy kept its configuration: nothing drained, modified or removed.
    after = await setup.envoy_stats()
    assert list(_changes(before, after)) == []
    assert after.get("control_plane.connected_state") == 1

    # A change made now can only come through the survivor.
    (setup.config / "route.yaml").write_text(ROUTE_WITH_HEADER)

    async def header_served() -> bool:
        status, headers = await setup.call()
        return status == 200 and headers.get("x-served-after-failover") == "yes"

    await apoll(header_served, "the new route through the survivor", 20.0, ignore=IGNORE)
    assert serving.alive() == (how == "sigstop")


async def test_a_replica_given_anothers_ports_refuses_to_start(tmp_path: Path) -> None:
    """gRPC would share a port between processes (SO_REUSEPORT) and split the
    proxies between two servers without a word; a replica must refuse instead."""
    config, ca_dir = tmp_path / "config", tmp_path / "ca"
    config.mkdir()
    tokens = tmp_path / "ca-tokens.yaml"
    tokens.write_text("[]")
    first = _start_replica("cp-1", tmp_path, config, ca_dir, tokens)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await _wait_ready(session, first)
        args = [str(a) for a in first.process.args]  # type: ignore[union-attr]
        # Same xDS and CA ports, its own HTTP port (which would fail on its own).
        args[args.index("--http-port") + 1] = str(free_port())
        second = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    finally:
        first.kill()
    assert second.returncode != 0
    assert "cannot bind" in second.stderr, second.stderr[-2000:]
    assert "Traceback" not in second.stderr
