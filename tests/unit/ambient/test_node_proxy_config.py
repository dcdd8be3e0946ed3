"""The node proxy's generated configuration: which pods and destinations it
serves, the identities it presents, the policies on its HBONE and inbound
listeners, checked against a golden file and validated by the real Envoy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

from envoy_validate import validate
from golden import assert_golden
from pilotfish.api.loader import load_text
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.ambient.node_proxy import node_key, node_proxy_config
from pilotfish.translate.ambient.pods import dataplane_mode
from pilotfish.xds.build.node_proxy import build_node_proxy

GOLDEN = Path(__file__).parent.parent.parent / "testdata" / "ambient" / "node-proxy.yaml"


def _entry(name: str, ip: str, sa: str, labels: dict[str, str], *, node: str, ready: bool) -> str:
    notes = {
        "pilotfish.io/node": node,
        "pilotfish.io/netns": f"pf-{name}",
        "pilotfish.io/pod-labels": json.dumps(labels),
        "pilotfish.io/pod-ports": json.dumps([9080]),
    }
    shown = {**labels, "istio.io/dataplane-mode": "ambient"} if ready else {}
    return f"""
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: default
  labels: {json.dumps(shown)}
  annotations: {json.dumps(notes)}
spec: {{address: {ip}, serviceAccount: {sa}, labels: {json.dumps(shown)}}}
"""


MESH = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-sidecar, namespace: default}
spec:
  address: 198.18.0.9
  serviceAccount: bookinfo-ratings
  labels: {app: ratings, security.istio.io/tlsMode: istio}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-productpage, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}}]
"""
MESH += _entry(
    "reviews-v1-0", "198.18.0.5", "bookinfo-reviews", {"app": "reviews"}, node="n1", ready=True
)
MESH += _entry(
    "productpage-v1-0",
    "198.18.0.4",
    "bookinfo-productpage",
    {"app": "productpage"},
    node="n1",
    ready=False,
)
MESH += _entry(
    "details-v1-0", "198.18.0.6", "bookinfo-details", {"app": "details"}, node="n2", ready=True
)


def snapshot(text: str) -> Snapshot:
    result = load_text(text, "inline.yaml")
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_snapshot(result.resources, 1, service_cidr="198.19.0.0/16")


def test_node_proxy_serves_exactly_its_hosts_ambient_pods() -> None:
    key = node_key(snapshot(MESH), "n1")
    assert [p.name for p in key.pods] == ["productpage-v1-0", "reviews-v1-0"]
    assert [p.name for p in node_key(snapshot(MESH), "n2").pods] == ["details-v1-0"]


def test_destinations_tunnel_to_ambient_pods_and_fall_back_to_sidecar_mtls() -> None:
    snap = snapshot(MESH)
    config = node_proxy_config(snap, node_key(snap, "n1"))
    pod = config.pods[0]
    assert pod.identity == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    by_host = {d.cluster.split("|")[2]: d for d in pod.outbound}
    reviews = by_host["reviews.default.svc.cluster.local"]
    # Only the ready pod is an endpoint; it is reached on its HBONE port.
    assert reviews.hbone and [(u.address, u.port) for u in reviews.upstreams] == [
        ("198.18.0.5", 15008)
    ]
    assert reviews.authority == "reviews.default.svc.cluster.local:9080"
    ratings = by_host["ratings.default.svc.cluster.local"]
    assert not ratings.hbone and [(u.address, u.port) for u in ratings.upstreams] == [
        ("198.18.0.9", 9080)
    ]


def test_policies_reach_the_destination_pod_only() -> None:
    snap = snapshot(MESH)
    pods = {p.name: p for p in node_proxy_config(snap, node_key(snap, "n1")).pods}
    (reviews_port,) = pods["reviews-v1-0"].inbound
    assert reviews_port.mtls == "STRICT"
    assert [p.name for p in reviews_port.authz] == ["default/no-productpage"]
    assert pods["productpage-v1-0"].inbound[0].authz == ()


def test_generated_config_is_golden_and_valid_for_envoy(
    tmp_path: Path, update_golden: bool
) -> None:
    snap = snapshot(MESH)
    listeners, clusters = build_node_proxy(node_proxy_config(snap, node_key(snap, "n1")))
    assert_golden(GOLDEN, {"listeners": listeners, "clusters": clusters}, update_golden)
    assert _envoy_problems(listeners, clusters, tmp_path) == []


def test_a_pod_without_ports_gets_an_inbound_listener_envoy_accepts(tmp_path: Path) -> None:
    # Envoy refuses a listener without filter chains, and the pod's readiness
    # waits for all three of its listeners.
    text = MESH + _entry(
        "client-0", "198.18.0.7", "client", {"app": "client"}, node="n1", ready=True
    ).replace("[9080]", "[]")
    snap = snapshot(text)
    listeners, clusters = build_node_proxy(node_proxy_config(snap, node_key(snap, "n1")))
    inbound = next(li for li in listeners if li.name == "ambient_inbound|client-0.default")
    assert [c.name for c in inbound.filter_chains] == ["no-ports"]
    assert _envoy_problems(listeners, clusters, tmp_path) == []


def _envoy_problems(
    listeners: list[object], clusters: list[object], tmp_path: Path, *, internal: bool = False
) -> list[str]:
    """What Envoy (validate mode) says of a bootstrap holding these resources
    (``internal``: with internal listeners enabled, as a waypoint's agent does)."""
    bootstrap = bootstrap_pb2.Bootstrap()
    if internal:
        from envoy.extensions.bootstrap.internal_listener.v3 import internal_listener_pb2

        extension = bootstrap.bootstrap_extensions.add(name="envoy.bootstrap.internal_listener")
        extension.typed_config.Pack(internal_listener_pb2.InternalListener())
    json_format.ParseDict(
        {
            "node": {"id": "node-proxy.istio-system", "cluster": "node-proxy"},
            "static_resources": {
                "clusters": [
                    {
                        "name": "sds-grpc",
                        "type": "STATIC",
                        "typed_extension_protocol_options": {
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                                "@type": "type.googleapis.com/"
                                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                                "explicit_http_config": {"http2_protocol_options": {}},
                            }
                        },
                        "load_assignment": {
                            "cluster_name": "sds-grpc",
                            "endpoints": [
                                {
                                    "lb_endpoints": [
                                        {
                                            "endpoint": {
                                                "address": {"pipe": {"path": "/tmp/none.sock"}}
                                            }
                                        }
                                    ]
                                }
                            ],
                        },
                    }
                ]
            },
        },
        bootstrap,
    )
    bootstrap.static_resources.listeners.extend(listeners)  # type: ignore[arg-type]
    bootstrap.static_resources.clusters.extend(clusters)  # type: ignore[arg-type]
    return list(validate({"node-proxy": bootstrap}, tmp_path))


@pytest.mark.parametrize(
    ("default", "namespace", "pod", "expected"),
    [
        ("sidecar", {}, {}, "sidecar"),
        ("ambient", {}, {}, "ambient"),
        ("sidecar", {"istio.io/dataplane-mode": "ambient"}, {}, "ambient"),
        ("ambient", {"istio.io/dataplane-mode": "none"}, {}, "sidecar"),
        (
            "sidecar",
            {"istio.io/dataplane-mode": "ambient"},
            {"istio.io/dataplane-mode": "none"},
            "sidecar",
        ),
        ("sidecar", {}, {"istio.io/dataplane-mode": "ambient"}, "ambient"),
    ],
)
def test_dataplane_mode_pod_label_then_namespace_then_default(
    default: str, namespace: dict[str, str], pod: dict[str, str], expected: str
) -> None:
    assert dataplane_mode(default, namespace, pod) == expected


_OFF = {"sidecar.istio.io/inject": "false"}
_ON = {"sidecar.istio.io/inject": "true"}


@pytest.mark.parametrize(
    ("default", "namespace", "pod", "annotations", "expected"),
    [
        # Injection disabled by the namespace or by the pod: out of the mesh.
        ("sidecar", {"istio-injection": "disabled"}, {}, {}, "none"),
        ("sidecar", {}, _OFF, {}, "none"),
        ("sidecar", {}, {}, _OFF, "none"),  # the deprecated annotation
        ("sidecar", {}, {"sidecar.istio.io/inject": "no"}, {}, "none"),
        # The pod's label wins over its annotation.
        ("sidecar", {}, _ON, _OFF, "sidecar"),
        # Either one disabled wins over the other enabled, as in Istio's injector.
        ("sidecar", {"istio-injection": "enabled"}, _OFF, {}, "none"),
        ("sidecar", {"istio-injection": "disabled"}, _ON, {}, "none"),
        ("sidecar", {"istio.io/rev": "default"}, {}, _OFF, "none"),
        # Injection enabled wins over ambient (a pod with a sidecar is not ambient).
        ("ambient", {"istio-injection": "enabled"}, {}, {}, "sidecar"),
        ("sidecar", {"istio.io/dataplane-mode": "ambient"}, _ON, {}, "sidecar"),
        # Injection disabled does not take a pod out of ambient.
        ("sidecar", {"istio.io/dataplane-mode": "ambient"}, _OFF, {}, "ambient"),
        ("ambient", {"istio-injection": "disabled"}, {}, {}, "ambient"),
        # Out of ambient and not injected: out of the mesh.
        (
            "ambient",
            {"istio-injection": "disabled", "istio.io/dataplane-mode": "none"},
            {},
            {},
            "none",
        ),
        # Unknown namespace values say nothing: the mesh default applies.
        ("sidecar", {"istio-injection": "maybe"}, {}, {}, "sidecar"),
        ("sidecar", {}, {"sidecar.istio.io/inject": ""}, {}, "sidecar"),
    ],
)
def test_dataplane_mode_follows_istios_injection_labels(
    default: str,
    namespace: dict[str, str],
    pod: dict[str, str],
    annotations: dict[str, str],
    expected: str,
) -> None:
    assert dataplane_mode(default, namespace, pod, annotations) == expected


def test_generator_regenerates_a_node_proxy_when_its_pods_change() -> None:
    from pilotfish.controlplane.generator import MeshGenerator
    from pilotfish.xds.types import LISTENER_TYPE

    generator = MeshGenerator()
    first = snapshot(MESH)
    generator.set_snapshot(first)
    view = generator.view_of(
        "node-proxy.istio-system",
        {"ROLE": "node-proxy", "NAMESPACE": "istio-system", "NODE_NAME": "n1"},
    )
    names = sorted(generator.generate(view)[LISTENER_TYPE].resources)
    assert "ambient_hbone|reviews-v1-0.default" in names
    extra = _entry(
        "ratings-v1-0", "198.18.0.7", "bookinfo-ratings", {"app": "x"}, node="n1", ready=False
    )
    result = load_text(MESH + extra, "inline.yaml")
    generator.set_snapshot(build_snapshot(result.resources, 2, first, service_cidr="198.19.0.0/16"))
    after = sorted(generator.generate(view)[LISTENER_TYPE].resources)
    assert set(after) - set(names) == {
        "ambient_outbound|ratings-v1-0.default",
        "ambient_inbound|ratings-v1-0.default",
        "ambient_hbone|ratings-v1-0.default",
    }


def test_the_hbone_listener_reports_istio_tcp_metrics_with_the_pods_labels() -> None:
    from pilotfish.packed_labels import unpack

    snap = snapshot(MESH)
    listeners, _ = build_node_proxy(node_proxy_config(snap, node_key(snap, "n1")))
    hbone = next(li for li in listeners if li.name == "ambient_hbone|reviews-v1-0.default")
    data = json_format.MessageToDict(hbone, preserving_proto_field_name=True)
    hcm = data["filter_chains"][0]["filters"][0]["typed_config"]
    packed = [
        counter["stat"]["tags"][0]["value_format"]
        for log in hcm["access_log"]
        for counter in log["typed_config"]["counters"]
    ]
    labels = dict(unpack(packed[0], {}))
    assert labels["reporter"] == "destination"
    assert labels["destination_workload"] == "reviews-v1-0"
    assert labels["destination_app"] == "reviews"
    assert labels["source_principal"] == "%DOWNSTREAM_PEER_URI_SAN%"


def test_the_destination_learns_the_source_workload_and_service_from_the_connect_headers() -> None:
    """productpage's tunnel to reviews carries productpage's record and the service it
    called; reviews' HBONE loggers read exactly those headers, so once Envoy has
    substituted them the series names both ends (as Istio's ztunnel baggage does)."""
    from pilotfish.packed_labels import unpack

    snap = snapshot(MESH)
    listeners, _ = build_node_proxy(node_proxy_config(snap, node_key(snap, "n1")))
    by_name = {
        li.name: json_format.MessageToDict(li, preserving_proto_field_name=True) for li in listeners
    }
    outbound = by_name["ambient_outbound|productpage-v1-0.default"]
    chain = next(c for c in outbound["filter_chains"] if "reviews.default" in c.get("name", ""))
    tunnel = chain["filters"][0]["typed_config"]["tunneling_config"]
    sent = {h["header"]["key"]: h["header"]["value"] for h in tunnel["headers_to_add"]}
    hbone = by_name["ambient_hbone|reviews-v1-0.default"]
    hcm = hbone["filter_chains"][0]["filters"][0]["typed_config"]
    template = hcm["access_log"][0]["typed_config"]["counters"][0]["stat"]["tags"][0][
        "value_format"
    ]
    formatted = template
    for header, value in sent.items():  # what Envoy's %REQ(header)% gives
        formatted = formatted.replace(f"%REQ({header})%", value)
    assert "%REQ(" not in formatted, formatted
    labels = dict(unpack(formatted, {}))
    assert labels["source_workload"] == "productpage-v1-0"
    assert labels["source_app"] == "productpage"
    assert labels["source_workload_namespace"] == "default"
    assert labels["destination_service"] == "reviews.default.svc.cluster.local"
    assert labels["destination_service_name"] == "reviews"
    assert labels["destination_workload"] == "reviews-v1-0"
