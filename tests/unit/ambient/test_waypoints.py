"""Waypoints: which services use one, what callers' node proxies do for them, and
the waypoint's own configuration (validated by Envoy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from pilotfish.api.loader import load_text
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.runtime.gateway_plans import plan_deployments
from pilotfish.translate.ambient.node_proxy import node_key, node_proxy_config
from pilotfish.translate.ambient.waypoints import (
    Waypoint,
    served_by,
    waypoint_policies,
    waypoints_of,
)
from pilotfish.xds.types import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE

from .test_node_proxy_config import MESH, _envoy_problems, snapshot

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
WAYPOINT = Waypoint("default", "waypoint")

GATEWAY = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"""
# What the runtime registers for the deployed waypoint.
REGISTERED = """
---
apiVersion: v1
kind: Service
metadata:
  name: waypoint
  namespace: default
  labels: {gateway.networking.k8s.io/gateway-name: waypoint}
spec:
  selector: {gateway.networking.k8s.io/gateway-name: waypoint}
  ports: [{name: status-port, port: 15021}, {name: mesh, port: 15008}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: waypoint, namespace: default}
spec:
  address: 198.18.0.30
  serviceAccount: waypoint
  labels: {gateway.networking.k8s.io/gateway-name: waypoint}
  ports: {status-port: 15021, mesh: 15008}
"""
NAMESPACE_LABEL = """
---
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/use-waypoint: waypoint}}
"""
DENY_PATH = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-reviews-1, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: DENY
  rules:
  - to: [{operation: {paths: [/reviews/1]}}]
"""
DENY_PRINCIPAL = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-productpage, namespace: default}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: DENY
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}}]
    to: [{operation: {methods: [POST]}}]
"""
DENY_ADDRESS = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-block, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: ratings}]
  action: DENY
  rules:
  - from: [{source: {ipBlocks: [198.18.0.4/32]}}]
    to: [{operation: {paths: [/ratings/9]}}]
"""
MESH_WITH_WAYPOINT = MESH + GATEWAY + REGISTERED + NAMESPACE_LABEL


def _unpack(packed: bytes, message: Message) -> Any:
    wrapper = any_pb2.Any()
    wrapper.ParseFromString(packed)
    wrapper.Unpack(message)
    return message


def test_a_namespace_label_sends_its_services_to_the_waypoint_but_not_the_waypoints_own() -> None:
    snap = snapshot(MESH_WITH_WAYPOINT)
    assert waypoints_of(snap) == {REVIEWS: WAYPOINT, RATINGS: WAYPOINT}
    assert served_by(snap, WAYPOINT) == ((RATINGS, 9080), (REVIEWS, 9080))
    # A service's own label wins over its namespace's; "none" opts it out.
    opted_out = MESH_WITH_WAYPOINT.replace(
        "metadata: {name: ratings, namespace: default}",
        "metadata: {name: ratings, namespace: default, labels: {istio.io/use-waypoint: none}}",
    )
    assert waypoints_of(snapshot(opted_out)) == {REVIEWS: WAYPOINT}
    # Without the label, no service uses it.
    assert waypoints_of(snapshot(MESH + GATEWAY + REGISTERED)) == {}


def test_callers_tunnel_to_the_waypoint_on_a_cluster_of_its_own() -> None:
    snap = snapshot(MESH_WITH_WAYPOINT)
    config = node_proxy_config(snap, node_key(snap, "n1"))
    productpage = next(p for p in config.pods if p.name == "productpage-v1-0")
    reviews = next(d for d in productpage.outbound if d.hostname == REVIEWS)
    # A cluster name of its own: the filter chain changes, so connections opened
    # before the service took the waypoint are drained instead of skipping it.
    assert reviews.cluster == f"ambient_waypoint|9080|{REVIEWS}|productpage-v1-0.default"
    assert reviews.hbone and reviews.authority == f"{REVIEWS}:9080"
    assert [(u.address, u.port, u.identity) for u in reviews.upstreams] == [
        ("198.18.0.30", 15008, "spiffe://cluster.local/ns/default/sa/waypoint")
    ]
    # Not deployed yet (no endpoint): its callers get no route to skip it by.
    pending = snapshot(MESH + GATEWAY + NAMESPACE_LABEL)
    config = node_proxy_config(pending, node_key(pending, "n1"))
    productpage = next(p for p in config.pods if p.name == "productpage-v1-0")
    assert REVIEWS not in {d.hostname for d in productpage.outbound}


def test_policies_attached_to_a_service_or_the_waypoint_apply_whole() -> None:
    snap = snapshot(MESH_WITH_WAYPOINT + DENY_PATH + DENY_PRINCIPAL + DENY_ADDRESS)
    found = waypoint_policies(snap, WAYPOINT, served_by(snap, WAYPOINT))
    assert [p.name for p in found[(REVIEWS, 9080)]] == [
        "default/no-productpage",
        "default/no-reviews-1",
    ]
    assert [p.name for p in found[(RATINGS, 9080)]] == [
        "default/no-block",
        "default/no-productpage",
    ]
    by_name = {p.name: p for p in found[(RATINGS, 9080)]}
    # The caller's identity and address reach the waypoint: rules naming them stay.
    (rule,) = by_name["default/no-productpage"].rules
    assert rule.sources and rule.operations
    (rule,) = by_name["default/no-block"].rules
    assert rule.sources and rule.operations
    # A policy with a selector is the workloads', not the waypoint's.
    assert "no-productpage" not in str(waypoint_policies(snapshot(MESH), WAYPOINT, ()))


def _waypoint_view(generator: MeshGenerator) -> Any:
    return generator.view_of(
        "waypoint.default",
        {
            "NAMESPACE": "default",
            "ROLE": "waypoint",
            "SERVICE_ACCOUNT": "waypoint",
            "LABELS": {"gateway.networking.k8s.io/gateway-name": "waypoint"},
            "WORKLOAD_CERTS": "true",
            "INSTANCE_IPS": "198.18.0.30",
        },
    )


def test_the_waypoint_accepts_only_its_services_and_enforces_their_policies(
    tmp_path: Path,
) -> None:
    generator = MeshGenerator()
    generator.set_snapshot(snapshot(MESH_WITH_WAYPOINT + DENY_PATH))
    view = _waypoint_view(generator)
    assert view.bind_ip == "127.0.0.1"  # its HTTP proxy is reached through HBONE only
    sets = generator.generate(view)
    listeners = {
        name: _unpack(b, listener_pb2.Listener())
        for name, b in sets[LISTENER_TYPE].resources.items()
    }
    assert set(listeners) == {"waypoint_http", "waypoint_hbone"}
    assert listeners["waypoint_http"].HasField("internal_listener")
    # The caller's address becomes the internal connection's remote address.
    assert [f.name for f in listeners["waypoint_http"].listener_filters] == [
        "envoy.filters.listener.original_dst"
    ]
    hbone = json_format.MessageToDict(listeners["waypoint_hbone"])
    hcm = hbone["filterChains"][0]["filters"][0]["typedConfig"]
    routes = hcm["routeConfig"]["virtualHosts"][0]["routes"]
    assert [r["match"]["headers"][0]["stringMatch"]["exact"] for r in routes] == [
        f"{RATINGS}:9080",
        f"{REVIEWS}:9080",
    ]
    assert {r["route"]["cluster"] for r in routes} == {"waypoint_http"}
    # Who calls is recorded per stream, shared with the upstream connection, and
    # (hashable) keys its pool, so no caller's connection serves another.
    (state,) = [f for f in hcm["httpFilters"] if f["name"].endswith("set_filter_state")]
    recorded = {v["objectKey"]: v for v in state["typedConfig"]["onRequestHeaders"]}
    assert set(recorded) == {
        "pilotfish.caller_principal",
        "pilotfish.caller_record",
        "pilotfish.caller_address",
        "envoy.filters.listener.original_dst.remote_ip",
    }
    assert all(v["sharedWithUpstream"] == "ONCE" for v in recorded.values())
    assert all(
        v["factoryKey"] == "envoy.hashable_string"
        for k, v in recorded.items()
        if k.startswith("pilotfish.")
    )
    assert "waypoint_http" in sets[CLUSTER_TYPE].resources
    # The path DENY sits on reviews' virtual host only.
    route = _unpack(sets[ROUTE_TYPE].resources["http_proxy"], route_pb2.RouteConfiguration())
    per_vhost = {vh.name: list(vh.typed_per_filter_config) for vh in route.virtual_hosts}
    assert per_vhost[f"{REVIEWS}:9080"] == ["envoy.filters.http.rbac.deny"]
    assert per_vhost[f"{RATINGS}:9080"] == []
    chain = listeners["waypoint_http"].default_filter_chain
    manager = hcm_pb2.HttpConnectionManager()
    assert chain.filters[0].typed_config.Unpack(manager)
    names = [f.name for f in manager.http_filters]
    assert names.index("envoy.filters.http.rbac.deny") < names.index("envoy.filters.http.router")
    clusters = [_unpack(b, cluster_pb2.Cluster()) for b in sets[CLUSTER_TYPE].resources.values()]
    assert _envoy_problems(list(listeners.values()), clusters, tmp_path, internal=True) == []


def _deny_rules_of(policies: str, host: str) -> tuple[str, Any]:
    """The waypoint's DENY rules on ``host``'s virtual host (as JSON) and its sets."""
    from envoy.extensions.filters.http.rbac.v3 import rbac_pb2

    generator = MeshGenerator()
    generator.set_snapshot(snapshot(MESH_WITH_WAYPOINT + policies))
    sets = generator.generate(_waypoint_view(generator))
    route = _unpack(sets[ROUTE_TYPE].resources["http_proxy"], route_pb2.RouteConfiguration())
    (vhost,) = [vh for vh in route.virtual_hosts if vh.name == f"{host}:9080"]
    per_route = rbac_pb2.RBACPerRoute()
    assert vhost.typed_per_filter_config["envoy.filters.http.rbac.deny"].Unpack(per_route)
    return json_format.MessageToJson(per_route), sets


def test_principal_rules_match_the_callers_recorded_identity() -> None:
    text, _ = _deny_rules_of(DENY_PRINCIPAL, REVIEWS)
    # The internal connection has no certificate: the HBONE listener's record is read.
    assert "pilotfish.caller_principal" in text and "authenticated" not in text
    assert "spiffe://cluster.local/ns/default/sa/bookinfo-productpage" in text


def test_address_rules_match_the_callers_restored_address_never_a_header() -> None:
    text, sets = _deny_rules_of(DENY_ADDRESS, RATINGS)
    # The internal connection's direct peer is the HBONE listener; its remote
    # address is the caller's, restored by the internal listener.
    assert "remoteIp" in text and "directRemoteIp" not in text
    listener = _unpack(sets[LISTENER_TYPE].resources["waypoint_http"], listener_pb2.Listener())
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.default_filter_chain.filters[0].typed_config.Unpack(manager)
    # So the remote address is the connection's, not an X-Forwarded-For claim.
    assert manager.use_remote_address.value is True


def test_waypoint_gateways_are_deployed_named_after_the_gateway_with_the_waypoint_role() -> None:
    resources = load_text(MESH + GATEWAY, "inline.yaml").resources
    plans = plan_deployments(resources)
    plan = plans["waypoint"]
    assert (plan.name, plan.service_account, plan.role) == ("waypoint", "waypoint", "waypoint")
    assert ("mesh", 15008) in plan.ports
    ingress = load_text(GATEWAY.replace("istio-waypoint", "istio"), "inline.yaml").resources
    assert plan_deployments(ingress)["waypoint-istio"].role == "gateway"


# Istio's samples/ambient-argo: the split as a Gateway API route attached to the Service.
HTTPROUTE_90_10 = """
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v1, namespace: default}
spec:
  selector: {app: reviews, version: v1}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2, namespace: default}
spec:
  selector: {app: reviews, version: v2}
  ports: [{name: http, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: reviews, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - backendRefs:
    - {name: reviews-v1, port: 9080, weight: 90}
    - {name: reviews-v2, port: 9080, weight: 10}
"""


def test_the_waypoint_applies_an_httproute_attached_to_the_service() -> None:
    generator = MeshGenerator()
    generator.set_snapshot(snapshot(MESH_WITH_WAYPOINT + HTTPROUTE_90_10))
    sets = generator.generate(_waypoint_view(generator))
    route = _unpack(sets[ROUTE_TYPE].resources["http_proxy"], route_pb2.RouteConfiguration())
    (reviews,) = [vh for vh in route.virtual_hosts if vh.name == f"{REVIEWS}:9080"]
    split = reviews.routes[0].route.weighted_clusters.clusters
    assert [(c.name, c.weight.value) for c in split] == [
        ("outbound|9080||reviews-v1.default.svc.cluster.local", 90),
        ("outbound|9080||reviews-v2.default.svc.cluster.local", 10),
    ]


RATINGS_FAULT_AND_RETRIES = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - fault: {delay: {fixedDelay: 2s, percentage: {value: 50}}}
    retries: {attempts: 4, perTryTimeout: 1s, retryOn: 5xx}
    route: [{destination: {host: ratings}}]
"""


def test_the_waypoint_applies_a_virtualservices_retries_and_faults() -> None:
    from envoy.extensions.filters.http.fault.v3 import fault_pb2

    generator = MeshGenerator()
    generator.set_snapshot(snapshot(MESH_WITH_WAYPOINT + RATINGS_FAULT_AND_RETRIES))
    sets = generator.generate(_waypoint_view(generator))
    route = _unpack(sets[ROUTE_TYPE].resources["http_proxy"], route_pb2.RouteConfiguration())
    (ratings,) = [vh for vh in route.virtual_hosts if vh.name == f"{RATINGS}:9080"]
    (first,) = ratings.routes
    assert first.route.retry_policy.num_retries.value == 4
    assert first.route.retry_policy.retry_on == "5xx"
    fault = fault_pb2.HTTPFault()
    assert first.typed_per_filter_config["envoy.filters.http.fault"].Unpack(fault)
    assert fault.delay.fixed_delay.seconds == 2


def test_a_waypoint_gateway_is_programmed_once_its_workload_is_registered() -> None:
    from pilotfish.api.resource import ResourceKey

    key = ResourceKey("KubernetesGateway", "default", "waypoint")
    status = snapshot(MESH_WITH_WAYPOINT).conversion.statuses[key]
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Accepted"]["status"] == "True"
    assert by_type["Programmed"]["status"] == "True"
    assert status["addresses"] == [{"type": "IPAddress", "value": "198.18.0.30"}]
    (listener,) = status["listeners"]
    assert {c["type"]: c["status"] for c in listener["conditions"]}["Accepted"] == "True"
    # Not deployed yet: accepted, not programmed, and the reason says why.
    pending = snapshot(MESH + GATEWAY).conversion.statuses[key]
    programmed = {c["type"]: c for c in pending["conditions"]}["Programmed"]
    assert programmed["status"] == "False" and programmed["reason"] == "AddressNotAssigned"
    # A listener that is not HBONE on 15008 is not accepted.
    wrong = snapshot(MESH + GATEWAY.replace("protocol: HBONE", "protocol: HTTP"))
    (listener,) = wrong.conversion.statuses[key]["listeners"]
    accepted = {c["type"]: c for c in listener["conditions"]}["Accepted"]
    assert accepted["status"] == "False" and accepted["reason"] == "UnsupportedProtocol"


def test_a_gatewayclass_of_istios_mesh_controller_makes_waypoints_too() -> None:
    custom = MESH_WITH_WAYPOINT.replace(
        "gatewayClassName: istio-waypoint", "gatewayClassName: mine"
    )
    custom += """
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: mine}
spec: {controllerName: istio.io/mesh-controller}
"""
    snap = snapshot(custom)
    # Its own Service is not sent through itself, as for the built-in class.
    assert waypoints_of(snap) == {REVIEWS: WAYPOINT, RATINGS: WAYPOINT}
    assert (
        plan_deployments(snap.of_kind("KubernetesGateway") + snap.of_kind("GatewayClass"))[
            "waypoint"
        ].role
        == "waypoint"
    )
