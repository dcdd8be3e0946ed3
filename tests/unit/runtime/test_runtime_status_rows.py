"""Rows of ``/runtime/pods``: gateways are listed like pods, with readiness and pids."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from pilotfish.ca.records import IssuedRecord
from pilotfish.runtime.gateways import GatewayProcess, GatewaySpec
from pilotfish.runtime.pod_lifecycle import PodStatus
from pilotfish.runtime.status_rows import gateway_row, pod_row
from pilotfish.runtime.supervised import ChildProcess

RECORD = IssuedRecord(
    pod="istio-ingressgateway",
    namespace="istio-system",
    service_account="istio-ingressgateway-service-account",
    spiffe_id="spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
    serial="0a",
    not_after=2_000_000_000.0,
    issued_at=1_900_000_000.0,
)


def _gateway(tmp_path: Path, health_port: int = 1) -> GatewayProcess:
    spec = GatewaySpec("istio-ingressgateway", "istio-system", (), "127.0.0.1", 1, health_port)
    (tmp_path / "work" / spec.name).mkdir(parents=True, exist_ok=True)
    return GatewayProcess(spec, "127.0.0.1:1", tmp_path / "logs", tmp_path / "work", sys.executable)


def test_pod_row_has_the_pod_fields_and_identity() -> None:
    status = PodStatus(
        "web-0", "web", "default", "10.0.0.2", "Running", True, 1, True, 11, 10, 1.0, None, ""
    )
    row = pod_row(status, None)
    assert row["ready"] is True and row["gateway"] is False and row["identity"] == ""
    assert row["sidecar_pid"] == 10 and row["app_pid"] == 11


async def test_gateway_row_like_a_pod(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    stopped = gateway_row(gw, None, None)
    assert stopped["phase"] == "Pending" and stopped["ready"] is False
    assert stopped["sidecar_pid"] is None and stopped["gateway"] is True

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)", start_new_session=True
    )
    gw.adopt(ChildProcess(proc), restarts=2)
    try:
        row = gateway_row(gw, True, RECORD)
        pod_keys = set(
            pod_row(PodStatus(*(["x"] * 5), True, 0, True, None, None, None, None, ""), None)
        )
        assert set(row) == pod_keys
        assert row["ready"] is True and row["sidecar_ready"] is True
        assert row["restarts"] == 2 and row["sidecar_pid"] == proc.pid
        assert row["phase"] == "Running" and row["identity"] == RECORD.spiffe_id
        assert gateway_row(gw, False, RECORD)["ready"] is False
    finally:
        await gw.stop(grace=1)


async def test_gateway_readiness_comes_from_its_health_endpoint(tmp_path: Path) -> None:
    ready = {"answer": 503}

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=ready["answer"])

    app = web.Application()
    app.router.add_get("/healthz/ready", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        gw = _gateway(tmp_path, health_port=port)
        async with aiohttp.ClientSession() as session:
            assert await gw.ready(session) is False
            ready["answer"] = 200
            assert await gw.ready(session) is True
    finally:
        await runner.cleanup()
