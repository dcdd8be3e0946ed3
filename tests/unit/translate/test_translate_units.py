"""The registry (services and endpoints from config) and snapshot generations."""

from __future__ import annotations

from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.model.snapshot import build_snapshot
from pilotfish.registry.build import Registry, build_registry
from pilotfish.registry.protocol import protocol_of


def load(text: str) -> tuple[Resource, ...]:
    result = load_text(text, "inline.yaml")
    assert result.ok, result.diagnostics
    return result.resources


def endpoints(registry: Registry, host: str, port: int) -> list[tuple[str, int]]:
    return [(i.address, i.port) for i in registry.instances_of(host, port)]


REVIEWS = "reviews.default.svc.cluster.local"

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: 8080}
  - {name: grpc, port: 7070, targetPort: grpc-port}
  - {name: tcp-raw, port: 9100}
"""


def workload(name: str, address: str, ns: str = "default", extra: str = "") -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  address: {address}
  labels: {{app: reviews}}
{extra}"""


# -- registry -----------------------------------------------------------------------


def test_service_selects_workloads_of_its_namespace_by_label() -> None:
    text = (
        SERVICE
        + workload("r1", "10.0.0.1")
        + workload("other-ns", "10.0.0.2", ns="prod")
        + """
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: unrelated, namespace: default}
spec:
  address: 10.0.0.3
  labels: {app: ratings}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: by-metadata-label
  namespace: default
  labels: {app: reviews}
spec:
  address: 10.0.0.4
"""
    )
    registry = build_registry(load(text))
    addresses = [a for a, _ in endpoints(registry, REVIEWS, 9080)]
    assert addresses == ["10.0.0.1", "10.0.0.4"]


def test_a_selector_needs_every_label() -> None:
    text = (
        SERVICE.replace("{app: reviews}", "{app: reviews, version: v2}")
        + workload("v1", "10.0.0.1")
        + workload("v2", "10.0.0.2").replace("{app: reviews}", "{app: reviews, version: v2}")
    )
    registry = build_registry(load(text))
    assert [a for a, _ in endpoints(registry, REVIEWS, 9080)] == ["10.0.0.2"]
    selecting = registry.services_selecting("default", {"app": "reviews", "version": "v2"})
    assert [s.hostname for s in selecting] == [REVIEWS]
    assert registry.services_selecting("default", {"app": "reviews"}) == []
    assert registry.services_selecting("prod", {"app": "reviews", "version": "v2"}) == []


def test_service_without_selector_has_no_endpoints() -> None:
    text = SERVICE.replace("  selector: {app: reviews}\n", "") + workload("r1", "10.0.0.1")
    registry = build_registry(load(text))
    assert REVIEWS in registry.services
    assert endpoints(registry, REVIEWS, 9080) == []


def test_workload_port_mapping() -> None:
    text = (
        SERVICE
        + workload("by-name", "10.0.0.1", extra="  ports: {http: 18080, grpc-port: 17070}\n")
        + workload("no-ports", "10.0.0.2")
    )
    registry = build_registry(load(text))
    # The workload's port named like the service port wins; else numeric targetPort.
    assert endpoints(registry, REVIEWS, 9080) == [("10.0.0.1", 18080), ("10.0.0.2", 8080)]
    # A named targetPort is looked up in the workload's ports; else the service port.
    assert endpoints(registry, REVIEWS, 7070) == [("10.0.0.1", 17070), ("10.0.0.2", 7070)]
    assert endpoints(registry, REVIEWS, 9100) == [("10.0.0.1", 9100), ("10.0.0.2", 9100)]


def test_port_protocols() -> None:
    registry = build_registry(load(SERVICE))
    svc = registry.services[REVIEWS]
    assert [(p.port, p.protocol, p.is_http) for p in svc.ports] == [
        (9080, "HTTP", True),
        (7070, "GRPC", True),
        (9100, "TCP", False),
    ]
    assert protocol_of("web", "http") == "HTTP"  # appProtocol wins over the name
    assert protocol_of("http-web", "kubernetes.io/h2c") == "HTTP2"
    assert protocol_of("grpc-web-api") == "GRPC-WEB"
    assert protocol_of("redis") == "REDIS"
    assert protocol_of("custom") == "TCP"  # never guess HTTP
    assert protocol_of("custom", None, "HTTP") == "HTTP"  # ServiceEntry's declared protocol


SERVICE_ENTRIES = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static, namespace: default}
spec:
  hosts: [db.example.com]
  resolution: STATIC
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  endpoints:
  - {address: 192.0.2.10}
  - {address: 192.0.2.11, ports: {tcp: 6432}, labels: {role: replica}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: none, namespace: default}
spec:
  hosts: [legacy.example.com]
  resolution: NONE
  ports: [{number: 3306, name: tcp, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: default}
spec:
  hosts: [vm.example.com]
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
  ports: [{number: 8080, name: http, protocol: HTTP, targetPort: 80}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: default}
spec: {address: 10.0.5.1, labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-elsewhere, namespace: prod}
spec: {address: 10.0.6.1, labels: {app: vm}}
"""


def test_service_entry_endpoints_by_resolution() -> None:
    registry = build_registry(load(SERVICE_ENTRIES))
    static = registry.instances_of("db.example.com", 5432)
    assert [(i.address, i.port) for i in static] == [("192.0.2.10", 5432), ("192.0.2.11", 6432)]
    assert dict(static[1].labels) == {"role": "replica"}
    assert registry.services["db.example.com"].resolution == "EDS"
    # DNS without endpoints: Envoy resolves the host itself.
    assert endpoints(registry, "api.example.com", 443) == [("api.example.com", 443)]
    assert registry.services["api.example.com"].resolution == "DNS"
    # NONE: the original destination is used, so there is nothing to list.
    assert endpoints(registry, "legacy.example.com", 3306) == []
    # workloadSelector: WorkloadEntries of the entry's namespace, at the targetPort.
    assert endpoints(registry, "vm.example.com", 8080) == [("10.0.5.1", 80)]


def test_kubernetes_service_wins_over_service_entry_of_the_same_host() -> None:
    entry = f"""
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: aaa-first, namespace: default}}
spec:
  hosts: [{REVIEWS}]
  resolution: STATIC
  ports: [{{number: 1234, name: http, protocol: HTTP}}]
  endpoints: [{{address: 192.0.2.99}}]
"""
    for text in (SERVICE + workload("r1", "10.0.0.1") + entry, entry + "\n---\n" + SERVICE):
        registry = build_registry(load(text))
        svc = registry.services[REVIEWS]
        assert svc.source_kind == "Service"
        assert [p.port for p in svc.ports] == [9080, 7070, 9100]
        assert registry.instances_of(REVIEWS, 1234) == ()


# -- snapshot generations -------------------------------------------------------------

VIRTUAL_SERVICE = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    timeout: TIMEOUT
"""


def test_unchanged_config_keeps_both_generations() -> None:
    text = SERVICE + workload("r1", "10.0.0.1") + VIRTUAL_SERVICE.replace("TIMEOUT", "1s")
    first = build_snapshot(load(text), 1)
    second = build_snapshot(load(text), 2, first)
    assert second.revision == 2
    assert (second.config_generation, second.endpoint_generation) == (0, 0)


def test_editing_a_workload_entry_bumps_only_endpoint_generation() -> None:
    vs = VIRTUAL_SERVICE.replace("TIMEOUT", "1s")
    first = build_snapshot(load(SERVICE + workload("r1", "10.0.0.1") + vs), 1)
    second = build_snapshot(load(SERVICE + workload("r1", "10.0.0.9") + vs), 2, first)
    assert second.config_generation == first.config_generation
    assert second.endpoint_generation == first.endpoint_generation + 1
    assert endpoints(second.registry, REVIEWS, 9080) == [("10.0.0.9", 8080)]


def test_editing_a_virtual_service_bumps_config_generation() -> None:
    base = SERVICE + workload("r1", "10.0.0.1")
    first = build_snapshot(load(base + VIRTUAL_SERVICE.replace("TIMEOUT", "1s")), 1)
    second = build_snapshot(load(base + VIRTUAL_SERVICE.replace("TIMEOUT", "2s")), 2, first)
    assert second.config_generation == first.config_generation + 1
    assert second.endpoint_generation == first.endpoint_generation


def test_adding_a_service_bumps_config_generation() -> None:
    first = build_snapshot(load(SERVICE), 1)
    other = SERVICE.replace("name: reviews,", "name: ratings,")
    second = build_snapshot(load(SERVICE + "\n---\n" + other), 2, first)
    assert second.config_generation == first.config_generation + 1


def test_snapshot_indexes_rules_and_gateways() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec: {host: reviews.default}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""
    snapshot = build_snapshot(load(text), 1)
    assert [r.name for r in snapshot.destination_rules[REVIEWS]] == ["reviews"]
    assert list(snapshot.gateways) == ["istio-system/ingress"]
    assert [r.kind for r in snapshot.of_kind("Gateway")] == ["Gateway"]
