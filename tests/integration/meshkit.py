"""A small real mesh for integration tests: the control plane, agents, echo apps.

The control plane runs in the test's event loop (real gRPC on a free port);
each agent runs as ``python -m pilotfish.cli.agent`` in its own session, so
teardown kills it and its Envoy by process group whatever happened; echo apps
are served in-process. Every workload gets its own loopback address, so
sidecars bind the same ports without clashing, as pods would.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from lanes import LANE
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.runtime.ports import free_port
from pilotfish.samples.echo import EchoIdentity, make_app
from polling import DEFAULT_IGNORE, apoll

DEADLINE = 30.0

# What a check against a mesh that is still converging may raise.
MESH_IGNORE = (*DEFAULT_IGNORE, aiohttp.ClientError)
#: The one polling helper (``tests/polling.py``), with the mesh's transient errors.
poll = functools.partial(apoll, ignore=MESH_IGNORE)

# Each mesh of a lane gets a 127.x.y.0/24 of its own: x is 100 + the lane (so
# lanes never share an address, as tests/lanes.py explains), y counts the
# lane's meshes. Two meshes on one address would fight over its ports (15001).
_BLOCKS = itertools.count(1)


@dataclass
class Proxy:
    name: str
    namespace: str
    ip: str
    admin_port: int
    health_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    # The agent's Prometheus endpoint (``/stats/prometheus``, Istio's 15090); 0: not served.
    stats_port: int = 0

    @property
    def proxy_id(self) -> str:
        return f"{self.name}.{self.namespace}"

    @property
    def outbound(self) -> str:
        """The explicit HTTP proxy address of this sidecar."""
        return f"http://{self.ip}:15001"

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@dataclass
class Mesh:
    root: Path
    config_dir: Path
    cp: ControlPlane | None = None
    session: aiohttp.ClientSession | None = None
    proxies: list[Proxy] = field(default_factory=list)
    apps: list[TestServer] = field(default_factory=list)
    block: int = field(default_factory=lambda: next(_BLOCKS))
    _next_host: itertools.count[int] = field(default_factory=lambda: itertools.count(2))

    def new_ip(self) -> str:
        return f"127.{100 + LANE}.{self.block % 256}.{next(self._next_host)}"

    @property
    def api(self) -> str:
        assert self.cp is not None
        return f"http://127.0.0.1:{self.cp.http_port}"

    def cli_env(self) -> dict[str, str]:
        """The environment for a ``pilotfish`` command talking to this control plane."""
        assert self.cp is not None
        return {**os.environ, "PILOTFISH_API_TOKEN": self.cp.api_token.reveal()}

    def write(self, name: str, text: str) -> Path:
        """Write a config file atomically (as editors and `kubectl apply` tools do)."""
        path = self.config_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    async def start(self) -> None:
        settings = ControlPlaneSettings(
            config_paths=(str(self.config_dir),), xds_port=0, http_port=0, poll_interval=0.05
        )
        self.cp = ControlPlane(settings)
        await self.cp.start()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def app(self, service: str, version: str) -> int:
        """Start an echo app on a free loopback port; returns the port."""
        server = TestServer(
            make_app(EchoIdentity(service, version, f"{service}-{version}")),
            host="127.0.0.1",
            port=free_port(),
        )
        await server.start_server()
        self.apps.append(server)
        assert server.port is not None
        return server.port

    def agent(
        self,
        name: str,
        *,
        namespace: str = "default",
        labels: dict[str, str] | None = None,
        ip: str | None = None,
        app_ports: dict[int, int] | None = None,
        role: str = "sidecar",
        locality: str = "",
        stats: bool = False,
    ) -> Proxy:
        assert self.cp is not None
        ip = ip or self.new_ip()
        # Admin and health listen on the workload's own loopback address: ports
        # picked there cannot be taken meanwhile by an outgoing connection's
        # source port on 127.0.0.1.
        admin, health = free_port(ip), free_port(ip)
        stats_port = free_port(ip) if stats else 0
        args = [
            sys.executable,
            "-m",
            "pilotfish.cli.agent",
            "--role",
            role,
            "--name",
            name,
            "--namespace",
            namespace,
            "--ip",
            ip,
            "--admin-address",
            ip,
            "--health-bind",
            ip,
            "--xds-address",
            f"127.0.0.1:{self.cp.xds_port}",
            "--admin-port",
            str(admin),
            "--health-port",
            str(health),
            "--stats-port",
            str(stats_port),
            "--concurrency",
            "1",
            "--drain-duration",
            "1",
            "--work-dir",
            str(self.root / f"agent-{name}"),
        ]
        if locality:
            args += ["--locality", locality]
        for k, v in (labels or {}).items():
            args += ["--label", f"{k}={v}"]
        for target, app in (app_ports or {}).items():
            args += ["--app-port", f"{target}={app}"]
        log_path = self.root / f"agent-{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        proxy = Proxy(name, namespace, ip, admin, health, proc, log_path, stats_port)
        self.proxies.append(proxy)
        return proxy

    async def ready(self, proxy: Proxy) -> None:
        async def check() -> bool:
            if proxy.process.poll() is not None:
                raise AssertionError(
                    f"agent {proxy.name} exited: {proxy.log_path.read_text()[-2000:]}"
                )
            assert self.session is not None
            url = f"http://{proxy.ip}:{proxy.health_port}/healthz/ready"
            async with self.session.get(url) as resp:
                return resp.status == 200

        await poll(check, f"{proxy.name} ready")

    async def call(
        self, proxy: Proxy, host: str, path: str = "/", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any] | str]:
        """A request from a workload through its sidecar to ``host`` (``name:port``)."""
        assert self.session is not None
        hdrs = {"Host": host, **(headers or {})}
        async with self.session.get(proxy.outbound + path, headers=hdrs) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def versions(self, proxy: Proxy, host: str, n: int, **kw: Any) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _ in range(n):
            status, body = await self.call(proxy, host, **kw)
            key = body["version"] if status == 200 and isinstance(body, dict) else str(status)
            counts[key] = counts.get(key, 0) + 1
        return counts

    async def get_json(self, path: str) -> Any:
        """GET ``path`` of the control plane's HTTP API, with its token."""
        assert self.session is not None and self.cp is not None
        headers = {"Authorization": f"Bearer {self.cp.api_token.reveal()}"}
        async with self.session.get(self.api + path, headers=headers) as resp:
            return await resp.json()

    async def explain(
        self,
        proxy: Proxy,
        url: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The control plane's explanation of ``url`` sent through ``proxy`` (its
        ``outcome``: cluster, clusters, status, authz)."""
        params = [("from", proxy.proxy_id), ("url", url), ("method", method)]
        params += [("header", f"{k}: {v}") for k, v in (headers or {}).items()]
        body = await self.get_json("/debug/explain?" + urllib.parse.urlencode(params))
        assert "outcome" in body, body
        return dict(body["outcome"])

    async def close(self) -> None:
        for proxy in self.proxies:
            proxy.kill()
        for app in self.apps:
            await app.close()
        if self.session is not None:
            await self.session.close()
        if self.cp is not None:
            await self.cp.close()
