"""Selector-less Services get their endpoints from EndpointSlices (registry)."""

from __future__ import annotations

import textwrap

from pilotfish.api.loader import load_text
from pilotfish.registry.build import build_registry

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: manual, namespace: shop}
spec: {ports: [{name: web, port: 8080, targetPort: 3000}, {name: admin, port: 9000}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: shop}
spec: {clusterIP: None, ports: [{port: 8080}]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: pod-a, namespace: shop, labels: {app: api, version: v1}}
spec: {address: 10.1.0.7, serviceAccount: api}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-ip4
  namespace: shop
  labels: {kubernetes.io/service-name: manual}
addressType: IPv4
ports: [{name: web, port: 3000, protocol: TCP}]
endpoints:
- {addresses: [10.1.0.7], conditions: {ready: true}}
- {addresses: [10.1.0.8]}
- {addresses: [10.1.0.9], conditions: {ready: false}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: manual-ip6
  namespace: shop
  labels: {kubernetes.io/service-name: manual}
addressType: IPv6
ports: [{name: web, port: 3000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: elsewhere
  namespace: other
  labels: {kubernetes.io/service-name: manual}
addressType: IPv4
ports: [{name: web, port: 3000}]
endpoints: [{addresses: [10.9.9.9]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: headless-1
  namespace: shop
  labels: {kubernetes.io/service-name: headless}
addressType: IPv4
ports: [{port: 3000}]
endpoints: [{addresses: [10.1.0.8]}]
"""


def test_slices_give_a_selectorless_service_its_endpoints() -> None:
    loaded = load_text(textwrap.dedent(CONFIG), "slices.yaml")
    assert [d.format() for d in loaded.diagnostics if d.is_error] == []
    registry = build_registry(loaded.resources, service_cidr="10.96.0.0/24")
    manual = "manual.shop.svc.cluster.local"
    web = registry.instances_of(manual, 8080)
    # Not ready is left out; unset readiness counts as ready; another namespace's slice
    # does not count.
    assert [(i.address, i.port) for i in web] == [("10.1.0.7", 3000), ("10.1.0.8", 3000)]
    # The address of a mesh pod takes the pod's identity and labels.
    assert (web[0].service_account, dict(web[0].labels)["version"]) == ("api", "v1")
    assert web[1].service_account == "" and web[1].labels == ()
    assert registry.instances_of(manual, 9000) == ()  # no slice port named admin
    headless = registry.instances_of("headless.shop.svc.cluster.local", 8080)
    assert [(i.address, i.port) for i in headless] == [("10.1.0.8", 3000)]
