from __future__ import annotations

from api_testing import Loader

from pilotfish.api.resource import Resource
from pilotfish.api.validation.references import check_references

BASE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: edge}
spec:
  servers: [{port: {number: 80, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: ['*.example.com']
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
"""


def _resources(load: Loader, extra: str) -> list[Resource]:
    result = load(BASE + "---\n" + extra)
    assert result.ok, [d.format() for d in result.diagnostics]
    return list(result.resources)


def _warnings(load: Loader, extra: str) -> dict[str, tuple[int, str]]:
    found = check_references(_resources(load, extra))
    assert all(not d.is_error for d in found)
    return {d.field: (d.source.line if d.source else 0, d.message) for d in found}


def test_resolvable_references_give_no_warnings(load: Loader) -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ok, namespace: default}
spec:
  hosts: [reviews]
  gateways: [mesh, edge/public]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
  tls:
  - match: [{sniHosts: [reviews]}]
    route: [{destination: {host: api.example.com}}]
"""
    assert _warnings(load, vs) == {}


def test_dangling_host_subset_and_gateway(load: Loader) -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad, namespace: default}
spec:
  hosts: [reviews]
  gateways: [public, edge/missing]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
      weight: 60
    - destination: {host: ratings}
      weight: 40
    mirror: {host: nowhere.other}
"""
    warnings = _warnings(load, vs)
    assert set(warnings) == {
        "spec.gateways[0]",
        "spec.gateways[1]",
        "spec.http[0].route[0].destination.subset",
        "spec.http[0].route[1].destination.host",
        "spec.http[0].mirror.host",
    }
    # Short gateway names mean the VirtualService's own namespace.
    assert "default/public" in warnings["spec.gateways[0]"][1]
    assert "'v9'" in warnings["spec.http[0].route[0].destination.subset"][1]
    assert (
        "ratings.default.svc.cluster.local" in warnings["spec.http[0].route[1].destination.host"][1]
    )
    # Lines point at the offending field (line 38 of the combined text).
    assert warnings["spec.http[0].route[1].destination.host"][0] == 38


def test_destination_rule_without_service(load: Loader) -> None:
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orphan, namespace: default}
spec: {host: details}
"""
    warnings = _warnings(load, dr)
    assert list(warnings) == ["spec.host"]
    assert "details.default.svc.cluster.local" in warnings["spec.host"][1]


def test_service_in_other_namespace_needs_qualified_name(load: Loader) -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: x, namespace: shop}
spec:
  hosts: [front]
  http:
  - route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews.default}}]
"""
    warnings = _warnings(load, vs)
    assert list(warnings) == ["spec.http[0].route[0].destination.host"]
