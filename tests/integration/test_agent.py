"""The agent with a real Envoy, a real ADS server and a real backend, as a user runs it.

The agent runs as `python -m pilotfish.cli.agent` in its own session so that
teardown can kill it and its Envoy by process group whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2, json_format

from pilotfish.agent import Agent, AgentConfig
from pilotfish.model.proxy_view import ProxyView
from pilotfish.runtime.ports import free_port
from pilotfish.samples.echo import EchoIdentity, make_app
from pilotfish.xds.server import XdsServer
from pilotfish.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ResourceSet,
)
from polling import apoll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DEADLINE = 30.0


def _pack(message: Any) -> bytes:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed.SerializeToString()


@dataclass
class EchoRouteGenerator:
    """One listener on ``listener_port`` routing everything to the echo app."""

    listener_port: int
    echo_port: int
    nodes: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)

    def view_of(self, node_id: str, metadata: Mapping[str, Any]) -> object:
        self.nodes.append((node_id, metadata))
        return ProxyView.from_node(metadata)

    def generate(self, view: object) -> Mapping[str, ResourceSet]:
        cluster = json_format.ParseDict(
            {
                "name": "echo",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "echo",
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": {
                                            "socket_address": {
                                                "address": "127.0.0.1",
                                                "port_value": self.echo_port,
                                            }
                                        }
                                    }
                                }
                            ]
                        }
                    ],
                },
            },
            cluster_pb2.Cluster(),
        )
        hcm = json_format.ParseDict(
            {
                "stat_prefix": "echo_http",
                "route_config": {
                    "name": "echo",
                    "virtual_hosts": [
                        {
                            "name": "echo",
                            "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}],
                        }
                    ],
                },
            },
            hcm_pb2.HttpConnectionManager(),
        )
        router = hcm.http_filters.add()
        router.name = "envoy.filters.http.router"
        router.typed_config.Pack(router_pb2.Router())
        listener = json_format.ParseDict(
            {
                "name": "echo_listener",
                "address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": self.listener_port}
                },
            },
            listener_pb2.Listener(),
        )
        hcm_filter = listener.filter_chains.add().filters.add()
        hcm_filter.name = "envoy.filters.network.http_connection_manager"
        hcm_filter.typed_config.Pack(hcm)
        return {
            CLUSTER_TYPE: ResourceSet(CLUSTER_TYPE, {"echo": _pack(cluster)}),
            ENDPOINT_TYPE: ResourceSet(ENDPOINT_TYPE, {}),
            LISTENER_TYPE: ResourceSet(LISTENER_TYPE, {"echo_listener": _pack(listener)}),
            ROUTE_TYPE: ResourceSet(ROUTE_TYPE, {}),
        }


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    work_dir: Path
    health_port: int
    listener_port: int
    xds_port: int
    output: Path

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz/ready"

    def envoy_pid(self) -> int | None:
        try:
            return int((self.work_dir / "envoy.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def log(self) -> str:
        agent_out = self.output.read_text(errors="replace")
        envoy_log = self.work_dir / "envoy.log"
        tail = envoy_log.read_text(errors="replace")[-4000:] if envoy_log.exists() else ""
        return f"--- agent output ---\n{agent_out}\n--- envoy.log (tail) ---\n{tail}"


@pytest.fixture
def echo_identity() -> EchoIdentity:
    return EchoIdentity(service="web", version="v1", hostname="web-0")


@pytest.fixture
async def echo_port(echo_identity: EchoIdentity) -> AsyncIterator[int]:
    server = TestServer(make_app(echo_identity), host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    yield server.port
    await server.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    work_dir = tmp_path / "work"
    output = tmp_path / "agent.out"
    health_port, listener_port, xds_port = free_port(), free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "pilotfish.cli.agent",
        "--role",
        "sidecar",
        "--name",
        "web-0",
        "--namespace",
        "test",
        "--label",
        "app=web",
        "--label",
        "version=v1",
        "--service-account",
        "web",
        "--ip",
        "127.0.0.1",
        "--xds-address",
        f"127.0.0.1:{xds_port}",
        "--admin-port",
        str(free_port()),
        "--health-port",
        str(health_port),
        "--stats-port",
        str(free_port()),
        "--concurrency",
        "1",
        "--drain-duration",
        "3",
        "--work-dir",
        str(work_dir),
    ]
    with output.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path
        )
    handle = AgentProcess(proc, work_dir, health_port, listener_port, xds_port, output)
    try:
        yield handle
    finally:
        envoy_pid = handle.envoy_pid()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if envoy_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(envoy_pid, signal.SIGKILL)


async def poll(
    what: str,
    check: Callable[[], Awaitable[bool]],
    agent: AgentProcess,
    timeout: float = DEADLINE,
) -> None:
    await apoll(check, what, timeout, interval=0.1, ignore=(), context=agent.log)


async def readiness(session: aiohttp.ClientSession, agent: AgentProcess) -> tuple[int, str]:
    """(status, body) of /healthz/ready, or (0, error) when nothing answers."""
    try:
        async with session.get(agent.health_url) as resp:
            return resp.status, await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, repr(exc)


async def start_xds(agent: AgentProcess, echo_port: int) -> tuple[XdsServer, EchoRouteGenerator]:
    generator = EchoRouteGenerator(agent.listener_port, echo_port)
    server = XdsServer(generator, quiet_period=0.05, max_delay=0.5)
    assert await server.start("127.0.0.1", agent.xds_port) == agent.xds_port
    return server, generator


async def wait_ready(session: aiohttp.ClientSession, agent: AgentProcess) -> None:
    async def ready() -> bool:
        assert agent.proc.poll() is None, agent.log()
        return (await readiness(session, agent))[0] == 200

    await poll("readiness 200", ready, agent)


async def test_ready_only_once_xds_configured_envoy(agent: AgentProcess, echo_port: int) -> None:
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers: list[tuple[int, str]] = []

        async def envoy_waits_for_xds() -> bool:
            assert agent.proc.poll() is None, agent.log()
            answers.append(await readiness(session, agent))
            return "INITIALIZING" in answers[-1][1]

        # Envoy runs but has no control plane yet: never ready, and it says why.
        await poll("envoy waiting for xDS", envoy_waits_for_xds, agent)
        assert agent.envoy_pid() is not None
        assert {status for status, _ in answers} <= {0, 503}, answers
        assert answers[-1][0] == 503

        server, generator = await start_xds(agent, echo_port)
        try:
            await wait_ready(session, agent)
            node_id, metadata = generator.nodes[0]
            assert node_id == "web-0.test"
            view = ProxyView.from_node(metadata)
            assert (view.namespace, view.service_account) == ("test", "web")
            assert view.label_map == {"app": "web", "version": "v1"}
            # The configuration really serves traffic.
            url = f"http://127.0.0.1:{agent.listener_port}/hello"
            async with session.get(url) as resp:
                assert resp.status == 200
                body = await resp.json()
            assert (body["service"], body["path"]) == ("web", "/hello")
            assert "x-request-id" in {name.lower() for name in body["headers"]}  # via Envoy
        finally:
            await server.close(grace=0)


async def test_kill_9_of_envoy_is_recovered(agent: AgentProcess, echo_port: int) -> None:
    server, _ = await start_xds(agent, echo_port)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            await wait_ready(session, agent)
            first = agent.envoy_pid()
            assert first is not None
            os.kill(first, signal.SIGKILL)

            async def restarted() -> bool:
                pid = agent.envoy_pid()
                return pid is not None and pid != first

            await poll("a new envoy process", restarted, agent)
            await wait_ready(session, agent)
            assert agent.proc.poll() is None
            with pytest.raises(ProcessLookupError):
                os.kill(first, 0)
    finally:
        await server.close(grace=0)


async def test_sigterm_drains_open_connections_then_exits_0(
    agent: AgentProcess, echo_port: int
) -> None:
    server, _ = await start_xds(agent, echo_port)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            await wait_ready(session, agent)
            envoy_pid = agent.envoy_pid()
            assert envoy_pid is not None
            # An idle keep-alive HTTP/1.1 connection through Envoy holds the drain open.
            reader, writer = await asyncio.open_connection("127.0.0.1", agent.listener_port)
            writer.write(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 5)
            assert status_line.startswith(b"HTTP/1.1 200")

            agent.proc.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                status, reason = await readiness(session, agent)
                return status == 503 and reason.strip() == "draining"

            await poll("readiness 503 while draining", draining, agent, timeout=5)
            # The idle connection holds the drain open (up to --drain-duration 3)...
            assert agent.proc.poll() is None
            closed = time.monotonic()
            writer.close()
            returncode = await asyncio.to_thread(agent.proc.wait, 15)
            assert returncode == 0, agent.log()
            # ...and closing it ends the drain well before that bound.
            assert time.monotonic() - closed < 2.0
    finally:
        await server.close(grace=0)
    with pytest.raises(ProcessLookupError):
        os.kill(envoy_pid, 0)
    assert not (agent.work_dir / "envoy.pid").exists()
    assert "stopped" in agent.output.read_text()


async def test_sigterm_without_traffic_exits_promptly(agent: AgentProcess, echo_port: int) -> None:
    server, _ = await start_xds(agent, echo_port)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            await wait_ready(session, agent)
        envoy_pid = agent.envoy_pid()
        assert envoy_pid is not None
        started = time.monotonic()
        agent.proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(agent.proc.wait, 15)
        assert returncode == 0, agent.log()
        # Nothing to drain: no waiting for the 3 s drain duration.
        assert time.monotonic() - started < 2.0
    finally:
        await server.close(grace=0)
    with pytest.raises(ProcessLookupError):
        os.kill(envoy_pid, 0)


async def test_drain_duration_bounds_the_wait_for_busy_connections(
    agent: AgentProcess, echo_port: int, echo_identity: EchoIdentity
) -> None:
    server, _ = await start_xds(agent, echo_port)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            await wait_ready(session, agent)
            _, writer = await asyncio.open_connection("127.0.0.1", agent.listener_port)
            # A request the backend answers only after 10 s keeps the connection busy.
            writer.write(b"GET /?delay=10000 HTTP/1.1\r\nHost: web\r\n\r\n")
            await writer.drain()

            async def in_flight() -> bool:
                return echo_identity.count >= 1

            await poll("the request to reach the backend", in_flight, agent)
            started = time.monotonic()
            agent.proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(agent.proc.wait, 20)
            elapsed = time.monotonic() - started
            writer.close()
            assert returncode == 0, agent.log()
            assert 2.5 <= elapsed < 10, elapsed  # --drain-duration 3 in the fixture
            assert "still active" in agent.output.read_text()
    finally:
        await server.close(grace=0)


async def test_second_sigterm_cuts_the_drain_short(
    agent: AgentProcess, echo_port: int, echo_identity: EchoIdentity
) -> None:
    server, _ = await start_xds(agent, echo_port)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            await wait_ready(session, agent)
            _, writer = await asyncio.open_connection("127.0.0.1", agent.listener_port)
            writer.write(b"GET /?delay=10000 HTTP/1.1\r\nHost: web\r\n\r\n")
            await writer.drain()

            async def in_flight() -> bool:
                return echo_identity.count >= 1

            await poll("the request to reach the backend", in_flight, agent)
            agent.proc.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                return (await readiness(session, agent))[0] == 503

            await poll("readiness 503 while draining", draining, agent, timeout=5)
            started = time.monotonic()
            agent.proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(agent.proc.wait, 15)
            writer.close()
            assert returncode == 0, agent.log()
            assert time.monotonic() - started < 2.0
    finally:
        await server.close(grace=0)


async def test_agent_class_in_process(tmp_path: Path, echo_port: int) -> None:
    listener_port = free_port()
    generator = EchoRouteGenerator(listener_port, echo_port)
    server = XdsServer(generator, quiet_period=0.05, max_delay=0.5)
    xds_port = await server.start("127.0.0.1", 0)
    config = AgentConfig(
        name="api-0",
        namespace="inproc",
        xds_port=xds_port,
        admin_port=free_port(),
        health_port=free_port(),
        stats_port=free_port(),
        concurrency=1,
        drain_duration=2.0,
        work_dir=tmp_path / "work",
    )
    proxy = Agent(config)
    await proxy.start()
    try:
        assert proxy.envoy is not None
        envoy_pid = proxy.envoy.pid
        assert envoy_pid is not None
        assert (proxy.work_dir / "bootstrap.json").exists()
        url = f"http://127.0.0.1:{proxy.health_port}/healthz/ready"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:

            async def ready() -> bool:
                async with session.get(url) as resp:
                    return resp.status == 200

            await apoll(ready, "the agent to be ready", DEADLINE, interval=0.1, ignore=())
            async with session.get(
                f"http://127.0.0.1:{config.stats_port}/stats/prometheus"
            ) as resp:
                assert resp.status == 200
                assert "envoy_cluster_manager_cds_update_success" in await resp.text()
        assert generator.nodes[0][0] == "api-0.inproc"
    finally:
        await proxy.drain_and_stop()
        await server.close(grace=0)
    with pytest.raises(ProcessLookupError):
        os.kill(envoy_pid, 0)
