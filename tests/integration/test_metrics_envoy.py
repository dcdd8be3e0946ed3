"""Istio's standard metrics from real sidecars, over plaintext (no mesh CA).

A client sidecar calls a server sidecar in explicit-proxy mode; both report
what they saw. The counts equal the requests sent; without mTLS the server
trusts no caller headers, so a caller is ``unknown`` even when its app
forges them, and the connection is ``none``.
"""

from __future__ import annotations

import pytest
from meshkit import Mesh, Proxy, poll
from prometheus_client.parser import text_string_to_metric_families

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


async def _metrics(mesh: Mesh, proxy: Proxy) -> str:
    """What a scraper reads from the proxy's Prometheus port (the agent's, as 15090)."""
    assert mesh.session is not None
    url = f"http://{proxy.ip}:{proxy.stats_port}/stats/prometheus"
    async with mesh.session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


def _total(text: str, metric: str, **labels: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == metric and labels.items() <= s.labels.items()
    )


async def _pair(mesh: Mesh) -> tuple[Proxy, Proxy]:
    ip = mesh.new_ip()
    mesh.write("ratings.yaml", SERVICE.format(ip=ip))
    port = await mesh.app("ratings", "v1")
    server = mesh.agent(
        "ratings-v1",
        ip=ip,
        labels={"app": "ratings", "version": "v1"},
        app_ports={9080: port},
        stats=True,
    )
    client = mesh.agent(
        "productpage-v1", labels={"app": "productpage", "version": "v1"}, stats=True
    )
    for proxy in (server, client):
        await mesh.ready(proxy)

    async def routed() -> bool:
        status, _ = await mesh.call(client, "ratings:9080", "/warmup")
        return status == 200

    await poll(routed, "the client to reach ratings")
    return client, server


async def test_counts_equal_requests_and_plaintext_callers_are_unknown(mesh: Mesh) -> None:
    client, server = await _pair(mesh)
    dest = {"reporter": "destination", "response_code": "200"}
    src = {"reporter": "source", "response_code": "200", "destination_service_name": "ratings"}
    before_dest = _total(await _metrics(mesh, server), "istio_requests_total", **dest)
    before_src = _total(await _metrics(mesh, client), "istio_requests_total", **src)
    n = 7
    forged = {"x-pilotfish-peer-workload": "forged", "x-pilotfish-destination-service": "x"}
    for _ in range(n):
        status, body = await mesh.call(client, "ratings:9080", "/ratings/0", headers=forged)
        assert status == 200
        # The server proxy took the peer headers off: the app sees none of them.
        assert isinstance(body, dict)
        seen = {k.lower() for k in body["headers"]}
        assert not any(k.startswith("x-pilotfish-") for k in seen), seen

    async def counted() -> bool:
        text = await _metrics(mesh, server)
        return _total(text, "istio_requests_total", **dest) - before_dest >= n

    await poll(counted, "the server sidecar to count the requests", deadline=10)
    server_text = await _metrics(mesh, server)
    assert _total(server_text, "istio_requests_total", **dest) - before_dest == n
    plain = {
        **dest,
        "source_workload": "unknown",
        "source_principal": "unknown",
        "connection_security_policy": "none",
        "destination_workload": "ratings-v1",
        "destination_app": "ratings",
        "destination_version": "v1",
        "request_protocol": "http",
    }
    assert _total(server_text, "istio_requests_total", **plain) - before_dest == n
    assert "forged" not in server_text

    async def client_counted() -> bool:
        text = await _metrics(mesh, client)
        return _total(text, "istio_requests_total", **src) - before_src >= n

    # Each sidecar counts a request when its own stream ends: poll the client too.
    await poll(client_counted, "the client sidecar to count the requests", deadline=10)
    client_text = await _metrics(mesh, client)
    assert _total(client_text, "istio_requests_total", **src) - before_src == n
    mine = {**src, "source_workload": "productpage-v1", "source_app": "productpage"}
    assert _total(client_text, "istio_requests_total", **mine) - before_src == n
    # The client's own sidecar replaced the app's forged headers.
    assert "forged" not in client_text
    assert 'destination_service="ratings.default.svc.cluster.local"' in client_text
