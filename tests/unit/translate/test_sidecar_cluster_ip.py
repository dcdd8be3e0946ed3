"""A captured sidecar picks a Service's routes by the cluster IP the app dialled, not
by the Host header (Gateway API's MeshClusterIPMatching, upstream's
MeshFrontendHostname); other destinations (pod addresses, ServiceEntry addresses)
keep routing by Host.

Each request is followed through the sidecar's IR the way Envoy picks: the
per-port listener, its filter chain by destination address, that chain's route
configuration's virtual host by Host, the first matching route."""

from __future__ import annotations

import pytest

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.explain.listeners import Connection, select_chain
from pilotfish.explain.request import ExplainRequest
from pilotfish.explain.routing import match_route, select_virtual_host
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import build_snapshot
from pilotfish.translate.compose import compose

MESH = "mesh"
CONFIG = f"""
apiVersion: v1
kind: Service
metadata: {{name: echo-v1, namespace: {MESH}}}
spec:
  clusterIP: 10.96.1.1
  selector: {{app: echo, version: v1}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo-v2, namespace: {MESH}}}
spec:
  clusterIP: 10.96.1.2
  selector: {{app: echo, version: v2}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: mesh-split-v1, namespace: {MESH}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo-v2}}]
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: X-Header-Set, value: set}}]}}
    backendRefs: [{{name: echo-v2, port: 80}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shared, namespace: {MESH}}}
spec:
  hosts: [a.example.com, b.example.com]
  addresses: [192.0.2.50]
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: 192.0.2.51}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: {MESH}}}
spec:
  hosts: [api.example.com]
  addresses: [192.0.2.60]
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: 192.0.2.60}}]
"""
CLIENT = ProxyView(
    "sidecar",
    MESH,
    labels=(("app", "echo"), ("version", "v1")),
    interception="REDIRECT",
    bind_ip="0.0.0.0",
)


@pytest.fixture(scope="module")
def config() -> ir.ProxyConfig:
    loaded = load_text(CONFIG, "cluster-ip.yaml")
    assert loaded.ok, [d.format() for d in loaded.diagnostics]
    return compose(build_snapshot(loaded.resources, 1), CLIENT)


def _routed(config: ir.ProxyConfig, dialled: str, host: str) -> tuple[str, bool]:
    """(the cluster the request goes to, whether X-Header-Set is set on the answer)."""
    (listener,) = [x for x in config.listeners if x.name == "0.0.0.0_80"]
    chain, _ = select_chain(listener, Connection(dialled, 80))
    assert chain is not None and isinstance(chain.filter, ir.HttpConnectionManager)
    (routes,) = [r for r in config.route_configs if r.name == chain.filter.route_config_name]
    vhost, _, _ = select_virtual_host(routes, host)
    assert vhost is not None
    route, _ = match_route(vhost.routes, ExplainRequest(f"http://{host}/"))
    assert route is not None and isinstance(route.action, ir.ForwardAction)
    (target,) = route.action.clusters
    headers = (route.response_headers, target.response_headers)
    sets = any(name == "X-Header-Set" for ops in headers for name, _ in ops.set)
    return target.cluster, sets


V1 = "outbound|80||echo-v1.mesh.svc.cluster.local"
V2 = "outbound|80||echo-v2.mesh.svc.cluster.local"


def test_cluster_ip_chooses_the_service_whatever_the_host(config: ir.ProxyConfig) -> None:
    assert _routed(config, "10.96.1.2", "echo-v1") == (V2, True)
    assert _routed(config, "10.96.1.1", "echo-v2") == (V1, False)
    assert _routed(config, "10.96.1.2", "echo-v2") == (V2, True)
    assert _routed(config, "10.96.1.1", "anything.example.org:80") == (V1, False)


def test_other_destinations_route_by_host(config: ir.ProxyConfig) -> None:
    # A pod address is no service's VIP: the Host header decides.
    assert _routed(config, "10.1.0.7", "echo-v2") == (V2, True)
    assert _routed(config, "10.1.0.7", "echo-v1") == (V1, False)
    # A VIP two hosts share says nothing about which one is meant.
    assert _routed(config, "192.0.2.50", "b.example.com") == (
        "outbound|80||b.example.com",
        False,
    )
    assert _routed(config, "192.0.2.50", "a.example.com")[0] == "outbound|80||a.example.com"
    # A ServiceEntry's address is a server's, not a choice of service: Host decides.
    assert _routed(config, "192.0.2.60", "echo-v2") == (V2, True)
    assert _routed(config, "192.0.2.60", "api.example.com")[0] == "outbound|80||api.example.com"


def test_a_port_with_virtual_services_only_keeps_host_routing() -> None:
    # Without a Gateway API mesh route on the port, no per-cluster-IP chains are
    # built: each would carry a whole connection manager on every sidecar.
    services = CONFIG.split("---\napiVersion: gateway.networking.k8s.io/v1")[0]
    vs = f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo-v2, namespace: {MESH}}}
spec:
  hosts: [echo-v2]
  http:
  - route: [{{destination: {{host: echo-v2}}}}]
    headers: {{response: {{set: {{X-Header-Set: set}}}}}}
"""
    loaded = load_text(services + vs, "vs-only.yaml")
    assert loaded.ok, [d.format() for d in loaded.diagnostics]
    config = compose(build_snapshot(loaded.resources, 1), CLIENT)
    (listener,) = [x for x in config.listeners if x.name == "0.0.0.0_80"]
    assert not [c for c in listener.filter_chains if c.match.prefix_ranges]
    assert {r.name for r in config.route_configs} >= {"80"}
    assert not [r.name for r in config.route_configs if r.name.endswith(".svc.cluster.local:80")]
    # The Host header decides, as in Istio.
    assert _routed(config, "10.96.1.1", "echo-v2") == (V2, True)
