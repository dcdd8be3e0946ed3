"""VirtualService extras through real sidecars: what a client sees.

Fault injection (abort, fixed delay), retries against a backend that fails every
other attempt, a route timeout, mirroring (the shadow sees ``-shadow`` Hosts, the
caller only the primary), a CORS preflight, and ``sourceLabels`` sending two
clients with different labels to different subsets. One mesh with two client
sidecars serves every check, to keep the test cheap on a small machine.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from meshkit import Mesh, free_port, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# How early Envoy's timers may fire as seen from outside (its loop caches the time).
_TIMER_SLACK = 0.05

CONFIG = """\
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v1, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{http: {port1}}}, labels: {{app: reviews, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v2, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{http: {port2}}}, labels: {{app: reviews, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - match: [{{uri: {{prefix: /abort}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
  - match: [{{uri: {{prefix: /delay}}}}]
    fault: {{delay: {{fixedDelay: 2s, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
  - match: [{{uri: {{prefix: /flaky}}}}]
    retries: {{attempts: 3, retryOn: 5xx}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
  - match: [{{uri: {{prefix: /slow}}}}]
    timeout: 0.5s
    retries: {{attempts: 0}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
  - match: [{{uri: {{prefix: /mirror}}}}]
    mirror: {{host: reviews, subset: v2}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
  - match: [{{uri: {{prefix: /cors}}}}]
    corsPolicy:
      allowOrigins: [{{exact: "https://ok.example"}}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      maxAge: 60s
    route: [{{destination: {{host: reviews, subset: v1}}}}]
  - match: [{{uri: {{prefix: /who}}, sourceLabels: {{version: v2}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
"""


@dataclass
class Backend:
    """A tiny app: answers its version and the Host it saw; ``/flaky`` fails every
    odd-numbered attempt with 503; ``?delay=MS`` waits first."""

    version: str
    hosts: list[str] = field(default_factory=list)
    flaky_attempts: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hosts.append(request.headers.get("Host", ""))
        if request.path.startswith("/flaky"):
            self.flaky_attempts += 1
            if self.flaky_attempts % 2 == 1:
                return web.json_response({"version": self.version}, status=503)
        delay = int(request.query.get("delay", "0"))
        if delay:
            await asyncio.sleep(delay / 1000)
        return web.json_response({"version": self.version, "host": self.hosts[-1]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


async def _serve(mesh: Mesh, backend: Backend) -> int:
    server = TestServer(backend.app(), host="127.0.0.1", port=free_port())
    await server.start_server()
    mesh.apps.append(server)
    assert server.port is not None
    return server.port


async def test_vs_extras_as_clients_see_them(mesh: Mesh) -> None:
    v1, v2 = Backend("v1"), Backend("v2")
    port1, port2 = await _serve(mesh, v1), await _serve(mesh, v2)
    mesh.write("reviews.yaml", CONFIG.format(port1=port1, port2=port2))
    client = mesh.agent("client-a", labels={"app": "productpage", "version": "v1"})
    other = mesh.agent("client-b", labels={"app": "productpage", "version": "v2"})
    for p in (client, other):
        await mesh.ready(p)
    host = "reviews:9080"

    async def routed() -> bool:
        status, _ = await mesh.call(client, host, "/abort")
        return status == 418

    # 100 % abort answers the configured status (polled: config converges first).
    await poll(routed, "the abort fault to apply")
    for _ in range(5):
        assert (await mesh.call(client, host, "/abort"))[0] == 418
    # `pilotfish explain` predicts each behaviour below from the same IR.
    url = f"http://{host}"
    assert (await mesh.explain(client, url + "/abort"))["status"] == 418
    v1_cluster = "outbound|9080|v1|reviews.default.svc.cluster.local"
    v2_cluster = "outbound|9080|v2|reviews.default.svc.cluster.local"
    for path in ("/delay", "/flaky", "/slow", "/mirror", "/cors", "/who"):
        outcome = await mesh.explain(client, url + path)
        assert (outcome["cluster"], outcome["status"]) == (v1_cluster, None), (path, outcome)
    # The reviews endpoints run no sidecar: nothing authorizes at the destination.
    assert outcome["authz"] == "NONE"
    assert (await mesh.explain(other, url + "/who"))["cluster"] == v2_cluster

    # A 2 s fixed delay.
    started = time.monotonic()
    status, body = await mesh.call(client, host, "/delay")
    elapsed = time.monotonic() - started
    assert status == 200 and isinstance(body, dict) and body["version"] == "v1"
    # Envoy arms the delay timer from its event loop's cached time (libevent caches
    # "now" per loop iteration), taken a little before the request reached the fault
    # filter, so the delay may end up to a few ms short of 2 s as the client measures
    # it (1.99897 s was seen). Without the fault the answer takes milliseconds.
    assert 2.0 - _TIMER_SLACK <= elapsed < 3.0, elapsed

    # Retries: every request succeeds and took exactly two attempts.
    v1.flaky_attempts = 0
    for _ in range(5):
        status, body = await mesh.call(client, host, "/flaky")
        assert status == 200, body
    assert v1.flaky_attempts == 10

    # The route timeout cuts a 2 s answer at ~0.5 s with a 504.
    started = time.monotonic()
    status, _ = await mesh.call(client, host, "/slow?delay=2000")
    elapsed = time.monotonic() - started
    assert status == 504
    assert 0.4 <= elapsed < 1.5, elapsed

    # Mirroring: the caller sees v1; v2 receives the copies, marked by "-shadow".
    v2.hosts.clear()
    for _ in range(3):
        status, body = await mesh.call(client, host, "/mirror")
        assert status == 200 and isinstance(body, dict) and body["version"] == "v1"

    async def shadowed() -> list[str]:
        return [h for h in v2.hosts if h.split(":")[0].endswith("-shadow")]

    seen = await poll(shadowed, "mirrored requests at v2", deadline=10)
    assert all(h.split(":")[0] == "reviews-shadow" for h in v2.hosts), v2.hosts
    assert len(seen) >= 1

    # CORS: a preflight from an allowed origin is answered with that origin.
    assert mesh.session is not None
    preflight = {
        "Host": host,
        "Origin": "https://ok.example",
        "Access-Control-Request-Method": "POST",
    }
    async with mesh.session.options(client.outbound + "/cors", headers=preflight) as resp:
        assert resp.status == 200
        assert resp.headers.get("Access-Control-Allow-Origin") == "https://ok.example"
        assert "POST" in resp.headers.get("Access-Control-Allow-Methods", "")
        assert resp.headers.get("Access-Control-Max-Age") == "60"
    bad = {**preflight, "Origin": "https://evil.example"}
    async with mesh.session.options(client.outbound + "/cors", headers=bad) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers
    # explain: the CORS filter answers the allowed preflight; the other goes upstream.
    asked = {k: v for k, v in preflight.items() if k != "Host"}
    answered = await mesh.explain(client, url + "/cors", method="OPTIONS", headers=asked)
    assert (answered["status"], answered["cluster"]) == (200, None)
    forwarded = await mesh.explain(
        client, url + "/cors", method="OPTIONS", headers={**asked, "Origin": "https://evil.example"}
    )
    assert (forwarded["status"], forwarded["cluster"]) == (None, v1_cluster)

    # sourceLabels: the v2-labelled client goes to v2, the other one to v1.
    assert await mesh.versions(client, host, 5, path="/who") == {"v1": 5}
    assert await mesh.versions(other, host, 5, path="/who") == {"v2": 5}
