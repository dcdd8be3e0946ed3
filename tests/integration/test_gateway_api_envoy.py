"""A gateway Envoy configured only by Gateway API objects serves what they say.

The control plane converts the Gateway and HTTPRoute below into Istio objects
and serves them to a real gateway agent and Envoy (labelled as a Gateway API
deployment is) in front of two real sidecars with echo apps. Each request is
checked as a client sees it: redirects, rewrites, header modifiers, weights
(weight 0 gets nothing), the 500 share of a backend that does not exist, and
a TCPRoute splitting connections; then a mesh (GAMMA) route at a sidecar.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from meshkit import Mesh, Proxy, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {{name: reviews-v1, namespace: default}}
spec:
  selector: {{app: reviews, version: v1}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: reviews-v2, namespace: default}}
spec:
  selector: {{app: reviews, version: v2}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v1, namespace: default}}
spec: {{address: {ip1}, labels: {{app: reviews, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v2, namespace: default}}
spec: {{address: {ip2}, labels: {{app: reviews, version: v2}}}}
"""

GATEWAY_API = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 8080, protocol: HTTP, hostname: "*.example.com"}
  - {name: tcp, port: 9000, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: raw, namespace: default}
spec:
  parentRefs: [{name: web, sectionName: tcp}]
  rules:
  - backendRefs:
    - {name: reviews-v1, port: 9080, weight: 50}
    - {name: reviews-v2, port: 9080, weight: 50}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: web, sectionName: http}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: secure.example.com, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
        statusCode: 302
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: rewritten.example.com
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-route, value: api}]
        add: [{name: x-added, value: "yes"}]
        remove: [x-secret]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: x-served-by, value: gateway-api}]
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: Exact, value: /split}}]
    backendRefs:
    - {name: reviews-v1, port: 9080, weight: 1}
    - {name: reviews-v2, port: 9080, weight: 0}
    - {name: missing, port: 9080, weight: 1}
  - matches: [{path: {type: Exact, value: /v2-only}}]
    backendRefs:
    - {name: reviews-v1, port: 9080, weight: 0}
    - {name: reviews-v2, port: 9080, weight: 5}
"""

HOST = "shop.example.com"


async def _gateway_mesh(mesh: Mesh) -> Proxy:
    """reviews v1 and v2 behind sidecars, and the Gateway API gateway; all ready."""
    ip1, ip2 = mesh.new_ip(), mesh.new_ip()
    mesh.write("services.yaml", SERVICES.format(ip1=ip1, ip2=ip2))
    mesh.write("gateway-api.yaml", GATEWAY_API)
    port1, port2 = await mesh.app("reviews", "v1"), await mesh.app("reviews", "v2")
    s1 = mesh.agent(
        "reviews-v1", ip=ip1, labels={"app": "reviews", "version": "v1"}, app_ports={9080: port1}
    )
    s2 = mesh.agent(
        "reviews-v2", ip=ip2, labels={"app": "reviews", "version": "v2"}, app_ports={9080: port2}
    )
    gateway = mesh.agent(
        "web-gateway",
        role="gateway",
        labels={"gateway.networking.k8s.io/gateway-name": "web"},
    )
    for p in (s1, s2, gateway):
        await mesh.ready(p)
    return gateway


async def _get(
    mesh: Mesh, gw: Proxy, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    assert mesh.session is not None
    url = f"http://{gw.ip}:8080{path}"
    async with mesh.session.get(
        url, headers={"Host": HOST, **(headers or {})}, allow_redirects=False
    ) as resp:
        body: Any = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body, {k.lower(): v for k, v in resp.headers.items()}


async def test_gateway_api_routing_through_a_real_gateway(mesh: Mesh) -> None:
    gw = await _gateway_mesh(mesh)

    async def serving() -> bool:
        status, body, _ = await _get(mesh, gw, "/api/items")
        return status == 200 and body["version"] == "v1"

    await poll(serving, "the gateway routes /api")

    # URLRewrite: prefix /api -> /v2 (element-wise), Host rewritten; header modifiers.
    status, body, headers = await _get(mesh, gw, "/api/items?q=1", {"x-secret": "s"})
    assert status == 200
    assert body["path"] == "/v2/items"
    sent = {k.lower(): v for k, v in body["headers"].items()}
    assert sent["host"].startswith("rewritten.example.com")
    assert sent["x-route"] == "api" and sent["x-added"] == "yes"
    assert "x-secret" not in sent
    assert headers["x-served-by"] == "gateway-api"
    status, body, _ = await _get(mesh, gw, "/api")
    assert (status, body["path"]) == (200, "/v2")
    # PathPrefix /api does not match /apixyz: no rule does, Envoy answers 404.
    assert (await _get(mesh, gw, "/apixyz"))[0] == 404
    # A host outside the route's hostnames has no route either.
    assert (await _get(mesh, gw, "/api", {"Host": "other.example.com"}))[0] == 404

    # RequestRedirect: scheme and hostname (the scheme's default port is implied).
    status, _, headers = await _get(mesh, gw, "/old/page")
    assert status == 301
    assert headers["location"] == "https://secure.example.com/old/page"
    # ReplacePrefixMatch redirect keeps the rest of the path; without a scheme
    # the redirect keeps the listener's port.
    status, _, headers = await _get(mesh, gw, "/moved/a/b")
    assert status == 302
    assert headers["location"] == "http://shop.example.com:8080/new/a/b"

    # Weight 0 gets no traffic; explain predicts the same cluster from the IR.
    for _ in range(10):
        status, body, _ = await _get(mesh, gw, "/v2-only")
        assert (status, body["version"]) == (200, "v2")
    explained = await mesh.explain(gw, f"http://{HOST}:8080/v2-only")
    assert explained["cluster"] == "outbound|9080||reviews-v2.default.svc.cluster.local"

    # A missing backend answers 500 for its share; weight-0 v2 never answers.
    counts: dict[str, int] = {}
    for _ in range(80):
        status, body, _ = await _get(mesh, gw, "/split")
        key = body["version"] if status == 200 else str(status)
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == {"v1", "500"}, counts
    assert 20 <= counts["500"] <= 60, counts

    # TCPRoute: the TCP listener splits connections between its backends by weight.
    seen: dict[str, int] = {}
    assert mesh.session is not None
    for _ in range(30):
        async with mesh.session.get(
            f"http://{gw.ip}:9000/", headers={"Connection": "close"}
        ) as resp:
            body = await resp.json()
            seen[body["version"]] = seen.get(body["version"], 0) + 1
    assert set(seen) == {"v1", "v2"}, seen


async def test_gateway_api_status_is_served_by_the_config_api(mesh: Mesh) -> None:
    gw = await _gateway_mesh(mesh)
    assert gw.ip
    base = "/apis/gateway.networking.k8s.io/v1/namespaces/default"

    async def accepted() -> bool:
        route = await mesh.get_json(f"{base}/httproutes/shop")
        parents = route.get("status", {}).get("parents", [])
        return bool(parents) and parents[0]["conditions"][0]["status"] == "True"

    await poll(accepted, "the route's status says Accepted")
    route = await mesh.get_json(f"{base}/httproutes/shop")
    conditions = {c["type"]: c for c in route["status"]["parents"][0]["conditions"]}
    assert conditions["ResolvedRefs"]["reason"] == "BackendNotFound"
    assert "missing" in conditions["ResolvedRefs"]["message"]
    gateway = await mesh.get_json(f"{base}/gateways/web")
    assert gateway["kind"] == "Gateway"
    listener = gateway["status"]["listeners"][0]
    assert listener["attachedRoutes"] == 1
    try:
        istio = await mesh.get_json("/apis/networking.istio.io/v1/namespaces/default/gateways")
    except aiohttp.ContentTypeError:
        istio = {}
    # The derived Istio objects are internal: the config API lists only users' objects.
    assert all(not i["metadata"]["name"].endswith("-gwapi") for i in istio.get("items", []))


MESH_ROUTE = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - backendRefs: [{name: reviews-v1, port: 9080}]
"""


async def test_mesh_route_steers_a_services_traffic_at_the_client_sidecar(mesh: Mesh) -> None:
    ip1, ip2 = mesh.new_ip(), mesh.new_ip()
    mesh.write("services.yaml", SERVICES.format(ip1=ip1, ip2=ip2))
    mesh.write("mesh-route.yaml", MESH_ROUTE)
    port1, port2 = await mesh.app("reviews", "v1"), await mesh.app("reviews", "v2")
    s1 = mesh.agent(
        "reviews-v1", ip=ip1, labels={"app": "reviews", "version": "v1"}, app_ports={9080: port1}
    )
    s2 = mesh.agent(
        "reviews-v2", ip=ip2, labels={"app": "reviews", "version": "v2"}, app_ports={9080: port2}
    )
    client = mesh.agent("productpage", labels={"app": "productpage"})
    for p in (s1, s2, client):
        await mesh.ready(p)

    async def routed() -> bool:
        return await mesh.versions(client, "reviews:9080", 1) == {"v1": 1}

    await poll(routed, "the mesh route sends reviews traffic to v1")
    assert await mesh.versions(client, "reviews:9080", 10) == {"v1": 10}
    jason = await mesh.versions(client, "reviews:9080", 10, headers={"end-user": "jason"})
    assert jason == {"v2": 10}
