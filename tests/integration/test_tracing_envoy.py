"""``disableSpanReporting`` with real Envoy: no spans reported, context kept.

Istio's Telemetry ``tracing[].disableSpanReporting`` stops a workload's proxy
from reporting spans but leaves trace propagation and sampling alone. Here the
client's sidecar (productpage) has span reporting disabled and the server's
(ratings) reports to a real trace store (the runtime's Zipkin-compatible
collector, in-process) at 100 % sampling:

- a request carrying the client's ``traceparent`` reaches the echo app with
  the same trace id, and the store holds ratings' span in that trace, none of
  productpage's;
- a request with no trace context still gets one at the silent proxy, so
  ratings' span is a child (of the unreported span), not a trace root;
- once the Telemetry is deleted, productpage's spans do arrive: the silence
  came from the setting, and the check could fail.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from meshkit import Mesh, Proxy, poll

from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.model.mesh_config import parse_mesh_config
from pilotfish.runtime.ports import free_port
from pilotfish.tracing import SpanStore
from pilotfish.tracing.server import make_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: ratings, namespace: default}}
spec:
  selector: {{app: ratings}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings-v1, namespace: default}}
spec: {{address: {ip}, labels: {{app: ratings, version: v1}}}}
"""

QUIET_PRODUCTPAGE = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet-productpage, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  tracing: [{disableSpanReporting: true}]
"""

# Envoy's Zipkin reporter flushes every 5 s or every 5 spans.
FLUSH_DEADLINE = 30.0


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[Mesh, str]]:
    """A mesh tracing every request to a trace store on loopback; yields the
    mesh and the store's URL."""
    config = tmp_path / "config"
    config.mkdir()
    store = TestServer(make_app(SpanStore()), host="127.0.0.1", port=free_port())
    await store.start_server()
    mesh = Mesh(tmp_path, config)
    mesh_config = (
        "defaultConfig:\n  tracing:\n    sampling: 100\n"
        f"    zipkin: {{address: '127.0.0.1:{store.port}'}}\n"
    )
    settings = ControlPlaneSettings(
        config_paths=(str(config),),
        xds_port=0,
        http_port=0,
        poll_interval=0.05,
        mesh=parse_mesh_config(mesh_config),
    )
    try:
        mesh.cp = ControlPlane(settings)
        await mesh.cp.start()
        mesh.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield mesh, f"http://127.0.0.1:{store.port}"
    finally:
        await mesh.close()
        await store.close()


async def _get(mesh: Mesh, url: str) -> Any:
    assert mesh.session is not None
    async with mesh.session.get(url) as resp:
        return await resp.json() if resp.status == 200 else None


def _service(span: dict[str, Any]) -> str:
    return str(span.get("localEndpoint", {}).get("serviceName", "")).split(".")[0]


async def _config_dump(mesh: Mesh, proxy: Proxy) -> str:
    assert mesh.session is not None
    async with mesh.session.get(f"http://{proxy.ip}:{proxy.admin_port}/config_dump") as resp:
        return await resp.text()


async def _pair(mesh: Mesh) -> tuple[Proxy, Proxy]:
    ip = mesh.new_ip()
    mesh.write("ratings.yaml", SERVICE.format(ip=ip))
    mesh.write("telemetry.yaml", QUIET_PRODUCTPAGE)
    port = await mesh.app("ratings", "v1")
    server = mesh.agent(
        "ratings-v1", ip=ip, labels={"app": "ratings", "version": "v1"}, app_ports={9080: port}
    )
    client = mesh.agent("productpage-v1", labels={"app": "productpage", "version": "v1"})
    for proxy in (server, client):
        await mesh.ready(proxy)

    async def silent_and_routed() -> bool:
        # The client's tracer is the silent one before any request is traced.
        if "pilotfish_span_sink" not in await _config_dump(mesh, client):
            return False
        status, _ = await mesh.call(client, "ratings:9080", "/warmup")
        return status == 200

    await poll(silent_and_routed, "the client's silent tracer and a route to ratings")
    return client, server


async def _received(mesh: Mesh, client: Proxy, headers: dict[str, str]) -> dict[str, str]:
    status, body = await mesh.call(client, "ratings:9080", "/ratings/0", headers=headers)
    assert status == 200 and isinstance(body, dict), body
    return {k.lower(): v for k, v in body["headers"].items()}


async def _ratings_spans(mesh: Mesh, store: str, trace_id: str) -> list[dict[str, Any]]:
    async def reported() -> list[dict[str, Any]] | None:
        spans = await _get(mesh, f"{store}/api/v2/trace/{trace_id}")
        return spans if spans and any(_service(s) == "ratings" for s in spans) else None

    return await poll(reported, f"ratings' span in trace {trace_id}", deadline=FLUSH_DEADLINE)


async def test_disabled_span_reporting_still_propagates_the_trace(
    traced: tuple[Mesh, str],
) -> None:
    mesh, store = traced
    client, _ = await _pair(mesh)

    # 1. The client's own context goes on: same trace id at the app.
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    seen = await _received(mesh, client, {"traceparent": f"00-{trace_id}-{parent}-01"})
    assert seen["traceparent"].split("-")[1] == trace_id, seen
    assert seen["traceparent"].endswith("-01"), seen  # still sampled
    spans = await _ratings_spans(mesh, store, trace_id)

    # 2. No context from the app: the silent proxy starts the trace.
    seen = await _received(mesh, client, {})
    started = seen["traceparent"].split("-")[1]
    assert seen.get("x-b3-traceid") == started, seen
    started_spans = await _ratings_spans(mesh, store, started)
    # ratings' inbound span hangs under a span the silent proxy made and never sent.
    ids = {s["id"] for s in started_spans}
    assert all(s.get("parentId") and s["parentId"] not in ids for s in started_spans)

    # Nothing ever came from productpage (the warm-up request included).
    services = await _get(mesh, f"{store}/api/v2/services")
    assert services is not None and not any(s.startswith("productpage") for s in services)
    assert {_service(s) for s in spans + started_spans} == {"ratings"}

    # 3. Control: without the Telemetry, productpage's proxy reports again.
    (mesh.config_dir / "telemetry.yaml").unlink()

    async def reporting_again() -> bool:
        return "pilotfish_span_sink" not in await _config_dump(mesh, client)

    await poll(reporting_again, "the client's tracer to report to the store again")
    tid = secrets.token_hex(16)
    await _received(mesh, client, {"traceparent": f"00-{tid}-{secrets.token_hex(8)}-01"})

    async def both_report() -> bool:
        spans = await _get(mesh, f"{store}/api/v2/trace/{tid}")
        return bool(spans) and {"productpage", "ratings"} <= {_service(s) for s in spans}

    await poll(both_report, "productpage's and ratings' spans in one trace", FLUSH_DEADLINE)
