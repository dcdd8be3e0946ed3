"""Workload certificates end to end: real control plane with its CA, real agent, real Envoy.

The agent gets a certificate from the control plane's CA with a registered
pod token on the CA port, serves it to Envoy over SDS, Envoy streams xDS to
the mTLS port presenting it, and with a 20 s TTL the certificate rotates while requests
through Envoy keep succeeding and the ADS connection stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.runtime.ports import free_port
from polling import apoll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

NAMESPACE = "test"
ACCOUNT = "web"
PROXY_ID = f"web-0.{NAMESPACE}"
SPIFFE_ID = f"spiffe://cluster.local/ns/{NAMESPACE}/sa/{ACCOUNT}"
DEADLINE = 20.0


@dataclass
class Running:
    cp: ControlPlane
    proc: subprocess.Popen[bytes]
    work_dir: Path
    output: Path
    admin_port: int
    health_port: int
    stats_port: int

    def log(self) -> str:
        text = self.output.read_text(errors="replace")[-6000:]
        envoy_log = self.work_dir / "envoy.log"
        tail = envoy_log.read_text(errors="replace")[-6000:] if envoy_log.exists() else ""
        return f"--- agent output ---\n{text}\n--- envoy.log (tail) ---\n{tail}"


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    settings = ControlPlaneSettings(
        xds_port=0,
        http_port=0,
        secure_port=0,
        xds_mtls_port=0,
        ca_dir=str(tmp_path / "ca"),
        poll_interval=0.05,
    )
    cp = ControlPlane(settings)
    await cp.start()
    assert cp.ca is not None and cp.secure_port
    token = cp.ca.tokens.register(NAMESPACE, ACCOUNT, "web-0")
    token_file = tmp_path / "ca-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    root_file = tmp_path / "root.pem"
    root_file.write_text(cp.ca.root_pem)
    # The SDS socket path must stay under 108 bytes: a short work directory.
    work_dir = Path(tempfile.mkdtemp(prefix="pf-sds-it-"))
    output = tmp_path / "agent.out"
    admin_port, health_port, stats_port = free_port(), free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "pilotfish.cli.agent",
        "--name",
        "web-0",
        "--namespace",
        NAMESPACE,
        "--service-account",
        ACCOUNT,
        "--xds-address",
        f"127.0.0.1:{cp.xds_port}",
        "--xds-secure-address",
        f"127.0.0.1:{cp.xds_mtls_port}",
        "--ca-address",
        f"127.0.0.1:{cp.secure_port}",
        "--ca-token-file",
        str(token_file),
        "--root-cert-file",
        str(root_file),
        "--cert-ttl",
        "20s",
        "--admin-port",
        str(admin_port),
        "--health-port",
        str(health_port),
        "--stats-port",
        str(stats_port),
        "--concurrency",
        "1",
        "--drain-duration",
        "1",
        "--work-dir",
        str(work_dir),
    ]
    with output.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path
        )
    handle = Running(cp, proc, work_dir, output, admin_port, health_port, stats_port)
    try:
        yield handle
    finally:
        envoy_pid = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            envoy_pid = int((work_dir / "envoy.pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if envoy_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(envoy_pid, signal.SIGKILL)
        await cp.close()
        shutil.rmtree(work_dir, ignore_errors=True)


async def poll(
    what: str, check: Callable[[], Awaitable[bool]], run: Running, timeout: float = DEADLINE
) -> None:
    """``apoll`` while the agent runs; its log in the failure."""

    async def alive_check() -> bool:
        if run.proc.poll() is not None:
            pytest.fail(f"agent exited with {run.proc.returncode} waiting for {what}\n{run.log()}")
        return await check()

    ignore = (aiohttp.ClientError, TimeoutError)
    await apoll(alive_check, what, timeout, interval=0.1, ignore=ignore, context=run.log)


def _workload_serials(certs: dict[str, Any]) -> set[str]:
    """Serials (normalized hex) of certificates in Envoy's /certs that carry our SPIFFE id."""
    serials = set()
    for context in certs.get("certificates", []):
        for cert in context.get("cert_chain", []):
            uris = [san.get("uri") for san in cert.get("subject_alt_names", [])]
            if SPIFFE_ID in uris:
                serials.add(cert["serial_number"].lower().lstrip("0"))
    return serials


async def test_envoy_gets_its_cert_over_sds_and_rotation_drops_nothing(
    running: Running,
) -> None:
    run = running
    admin = f"http://127.0.0.1:{run.admin_port}"
    health = f"http://127.0.0.1:{run.health_port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 200, (url, resp.status, await resp.text())
                return await resp.json(content_type=None)

        async def ready() -> bool:
            async with session.get(health + "/healthz/ready") as resp:
                return resp.status == 200

        await poll("readiness", ready, run)

        # Envoy holds the workload certificate it got over SDS.
        serials = _workload_serials(await get_json(admin + "/certs"))
        assert len(serials) == 1, await get_json(admin + "/certs")
        (first_serial,) = serials
        identity = await get_json(health + "/identity")
        assert identity["spiffe_id"] == SPIFFE_ID
        assert identity["serial"].lstrip("0") == first_serial
        assert identity["not_after"] - time.time() < 21

        # xDS flows over the TLS port: the control plane sees the proxy, Envoy's
        # ADS cluster did a TLS handshake, and the socket file is 0660.
        syncz = await get_json(
            f"http://127.0.0.1:{run.cp.http_port}/debug/syncz",
            {"Authorization": f"Bearer {run.cp.api_token.reveal()}"},
        )
        assert PROXY_ID in str(syncz), syncz
        xds_stats = await _stats(session, admin, r"^cluster\.xds-grpc\.")
        assert xds_stats["cluster.xds-grpc.ssl.handshake"] >= 1
        assert oct((run.work_dir / "sds.sock").stat().st_mode & 0o777) == "0o660"
        connections_before = xds_stats["cluster.xds-grpc.upstream_cx_total"]

        # Requests through Envoy (its Prometheus listener) and readiness checks
        # in a loop until Envoy's certificate changes: none may fail.
        failures: list[str] = []
        done = 0
        deadline = time.monotonic() + 25.0
        rotated: set[str] = set()
        while time.monotonic() < deadline:
            for url in (
                f"http://127.0.0.1:{run.stats_port}/stats/prometheus",
                health + "/healthz/ready",
            ):
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        if resp.status != 200:
                            failures.append(f"{url}: {resp.status}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures.append(f"{url}: {exc!r}")
                done += 1
            rotated = _workload_serials(await get_json(admin + "/certs")) - {first_serial}
            if rotated:
                break
            await asyncio.sleep(0.05)
        assert rotated, f"certificate did not rotate within 25 s\n{run.log()}"
        assert failures == [], failures[:5]
        assert done > 20

        # Still connected over the same ADS connection, still in sync, identity updated.
        xds_after = await _stats(session, admin, r"^cluster\.xds-grpc\.")
        assert xds_after["cluster.xds-grpc.upstream_cx_total"] == connections_before
        assert xds_after["cluster.xds-grpc.upstream_cx_active"] == 1
        assert await ready()

        async def identity_rotated() -> bool:
            info = await get_json(health + "/identity")
            return bool(info["serial"].lstrip("0") in rotated and info["rotations"] >= 1)

        await poll("/identity to show the new certificate", identity_rotated, run)


async def _stats(session: aiohttp.ClientSession, admin: str, pattern: str) -> dict[str, int]:
    async with session.get(admin + "/stats", params={"filter": pattern}) as resp:
        text = await resp.text()
    stats: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(": ")
        with contextlib.suppress(ValueError):
            stats[name] = int(value)
    return stats
