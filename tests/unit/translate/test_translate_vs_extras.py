"""VirtualService extras: fault, mirroring, CORS, retry details, source matches, TCP/TLS routes."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.http_routes import RouteContext, http_routes
from pilotfish.translate.route_extras import grpc_status_code
from pilotfish.translate.sidecar import sidecar_outbound
from pilotfish.translate.source_match import source_label_keys
from pilotfish.xds.build.http_filters import http_filter
from pilotfish.xds.build.network_filters import build_tcp_proxy
from pilotfish.xds.build.routes import build_route
from pilotfish.xds.types import ROUTE_TYPE

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  clusterIP: 10.96.0.9
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: tcp-db, port: 3306}, {name: tls, port: 8443}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""

HTTP_VS = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - name: faulty
    match: [{uri: {prefix: /f}}]
    fault:
      delay: {fixedDelay: 1.5s, percent: 30}
      abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 12.5}}
    route: [{destination: {host: ratings}}]
  - name: no-percentage
    match: [{uri: {prefix: /n}}]
    fault: {abort: {httpStatus: 418}}
    route: [{destination: {host: ratings}}]
  - name: mirrored
    match: [{uri: {prefix: /m}}]
    mirror: {host: ratings, subset: v2}
    route: [{destination: {host: ratings, subset: v1}}]
  - name: retry
    match: [{uri: {prefix: /r}}]
    retries: {attempts: 3, retryOn: "cancelled,internal,unavailable,503", backoff: 25ms,
              retryRemoteLocalities: true}
    route: [{destination: {host: ratings}}]
  - name: v1-clients
    match: [{sourceLabels: {version: v1}}]
    route: [{destination: {host: ratings, subset: v1}}]
  - name: cors
    corsPolicy:
      allowOrigin: ["*"]
      allowOrigins: [{prefix: "https://app."}]
      allowMethods: [GET]
      maxAge: 90s
    route: [{destination: {host: ratings}}]
"""

L4_VS = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-l4, namespace: default}
spec:
  hosts: [ratings]
  tcp:
  - match: [{port: 3306, sourceNamespace: other}]
    route: [{destination: {host: ratings, subset: v2}}]
  - route:
    - {destination: {host: ratings, subset: v1}, weight: 70}
    - {destination: {host: ratings, subset: v2}, weight: 30}
  tls:
  - match: [{sniHosts: [ratings.default.svc.cluster.local]}]
    route: [{destination: {host: ratings, subset: v2}}]
"""


def snapshot(text: str) -> Snapshot:
    result = load_text(text, "extras.yaml")
    assert result.ok, result.diagnostics
    return build_snapshot(result.resources, 1)


def routes(labels: tuple[tuple[str, str], ...] = ()) -> dict[str, ir.Route]:
    snap = snapshot(SERVICES + HTTP_VS)
    (vs,) = snap.of_kind("VirtualService")
    ctx = RouteContext(snap, "default", 9080, proxy_labels=labels)
    return {r.name.rsplit("/", 1)[1]: r for r in http_routes(vs, ctx)}


def test_fault_translates_deprecated_percent_and_grpc_names() -> None:
    fault = routes()["faulty"].fault
    assert fault == ir.FaultPolicy(
        delay_ms=1500, delay_percent=30.0, abort_grpc_status=8, abort_percent=12.5
    )
    proto = build_route(routes()["faulty"])
    built = fault_pb2.HTTPFault()
    proto.typed_per_filter_config[http_filter("fault").envoy_name].Unpack(built)
    assert built.abort.grpc_status == 8
    assert built.abort.percentage.numerator == 125_000
    assert built.delay.fixed_delay.ToMilliseconds() == 1500
    assert built.delay.percentage.numerator == 300_000


def test_fault_without_percentage_injects_nothing() -> None:
    # As in Istio: an unspecified percentage means no request is aborted.
    fault = routes()["no-percentage"].fault
    assert fault is not None and fault.abort_http_status == 418 and fault.abort_percent == 0.0


def test_grpc_status_names_and_numbers() -> None:
    assert grpc_status_code("unavailable") == 14
    assert grpc_status_code("4") == 4
    assert grpc_status_code("NOT_A_STATUS") is None
    assert grpc_status_code("99") is None


def test_mirror_defaults_to_every_request() -> None:
    action = routes()["mirrored"].action
    assert isinstance(action, ir.ForwardAction)
    assert action.mirrors == (
        ir.MirrorPolicy("outbound|9080|v2|ratings.default.svc.cluster.local", 100.0),
    )
    policy = build_route(routes()["mirrored"]).route.request_mirror_policies[0]
    assert policy.runtime_fraction.default_value.numerator == 1_000_000


def test_retry_details() -> None:
    action = routes()["retry"].action
    assert isinstance(action, ir.ForwardAction) and action.retry is not None
    assert action.retry.retry_on == "cancelled,internal,unavailable,retriable-status-codes"
    assert action.retry.retriable_status_codes == (503,)
    built = build_route(routes()["retry"]).route.retry_policy
    assert built.retry_back_off.base_interval.ToMilliseconds() == 25
    assert built.retry_priority.name == "envoy.retry_priorities.previous_priorities"


def test_cors_policy_keeps_deprecated_origins_and_forwards_unmatched_preflights() -> None:
    cors = routes()["cors"].cors
    assert cors is not None
    assert cors.allow_origins == (
        ir.StringMatch("prefix", "https://app."),
        ir.StringMatch("exact", "*"),
    )
    built = cors_pb2.CorsPolicy()
    build_route(routes()["cors"]).typed_per_filter_config[http_filter("cors").envoy_name].Unpack(
        built
    )
    assert built.max_age == "90"
    assert built.allow_methods == "GET"
    assert built.forward_not_matching_preflights.value is True


def test_source_labels_select_rules_per_client() -> None:
    assert "v1-clients" not in routes((("version", "v2"),))
    assert "v1-clients" in routes((("app", "x"), ("version", "v1")))


def test_hcm_gets_fault_and_cors_filters_only_when_routes_use_them() -> None:
    view = ProxyView("sidecar", "default", interception="NONE", bind_ip="127.0.0.9")
    with_extras = sidecar_outbound(snapshot(SERVICES + HTTP_VS), view)
    hcm = with_extras.listeners[0].default_chain
    assert hcm is not None and isinstance(hcm.filter, ir.HttpConnectionManager)
    # peer_headers: every outbound connection manager reports metrics as source.
    assert hcm.filter.http_filters == ("grpc_messages", "fault", "cors", "peer_headers")
    plain = sidecar_outbound(snapshot(SERVICES), view).listeners[0].default_chain
    assert plain is not None and isinstance(plain.filter, ir.HttpConnectionManager)
    assert plain.filter.http_filters == ("grpc_messages", "peer_headers")


def _listener(view: ProxyView, port: int) -> ir.Listener:
    parts = sidecar_outbound(snapshot(SERVICES + L4_VS), view)
    return next(x for x in parts.listeners if x.name == f"0.0.0.0_{port}")


def test_tcp_weights_and_source_namespace() -> None:
    here = ProxyView("sidecar", "default", interception="REDIRECT", bind_ip="0.0.0.0")
    (chain,) = _listener(here, 3306).filter_chains
    assert isinstance(chain.filter, ir.TcpProxy)
    assert chain.filter.weighted_clusters == (
        ("outbound|3306|v1|ratings.default.svc.cluster.local", 70),
        ("outbound|3306|v2|ratings.default.svc.cluster.local", 30),
    )
    built = build_tcp_proxy(chain.filter)
    assert built.WhichOneof("cluster_specifier") == "weighted_clusters"
    assert [c.weight for c in built.weighted_clusters.clusters] == [70, 30]
    assert isinstance(built, tcp_proxy_pb2.TcpProxy)
    other = ProxyView("sidecar", "other", interception="REDIRECT", bind_ip="0.0.0.0")
    (chain,) = _listener(other, 3306).filter_chains
    assert isinstance(chain.filter, ir.TcpProxy)
    assert chain.filter.cluster == "outbound|3306|v2|ratings.default.svc.cluster.local"
    assert not chain.filter.weighted_clusters


def test_tls_routes_match_sni_before_the_vip_fallback() -> None:
    view = ProxyView("sidecar", "default", interception="REDIRECT", bind_ip="0.0.0.0")
    sni, fallback = _listener(view, 8443).filter_chains
    assert sni.match == ir.FilterChainMatch(
        prefix_ranges=("10.96.0.9/32",), server_names=("ratings.default.svc.cluster.local",)
    )
    assert isinstance(sni.filter, ir.TcpProxy)
    assert sni.filter.cluster == "outbound|8443|v2|ratings.default.svc.cluster.local"
    assert fallback.match == ir.FilterChainMatch(prefix_ranges=("10.96.0.9/32",))


def test_outbound_key_grows_labels_only_with_source_labels() -> None:
    a = ProxyView("sidecar", "default", labels=(("app", "a"), ("version", "v1")))
    b = ProxyView("sidecar", "default", labels=(("app", "b"), ("version", "v1")))
    c = ProxyView("sidecar", "default", labels=(("app", "a"), ("version", "v2")))
    assert source_label_keys(snapshot(SERVICES)) == frozenset()
    keys = source_label_keys(snapshot(SERVICES + HTTP_VS))
    assert keys == frozenset({"version"})
    assert a.outbound_key(frozenset(), "") == c.outbound_key(frozenset(), "")
    assert a.outbound_key(frozenset(), "").source_labels == ()
    assert a.outbound_key(keys, "") == b.outbound_key(keys, "")
    assert a.outbound_key(keys, "") != c.outbound_key(keys, "")


def test_generator_shares_outbound_translation_across_irrelevant_labels() -> None:
    gen = MeshGenerator()
    result = load_text(SERVICES + HTTP_VS, "extras.yaml")
    gen.set_snapshot(build_snapshot(result.resources, 1, gen.snapshot))
    views = [
        ProxyView("sidecar", "default", labels=(("app", app), ("version", version)))
        for app, version in (("a", "v1"), ("b", "v1"), ("a", "v2"))
    ]
    outs = [gen.generate(v) for v in views]
    # a/v1 and b/v1 share routes; v2 differs (the sourceLabels rule is absent).
    assert outs[0][ROUTE_TYPE].version == outs[1][ROUTE_TYPE].version
    assert outs[0][ROUTE_TYPE].version != outs[2][ROUTE_TYPE].version


def test_route_proto_without_extras_has_no_per_filter_config() -> None:
    route = ir.Route("r", ir.RouteMatch(), ir.DirectResponseAction(200))
    assert isinstance(build_route(route), rc_pb2.Route)
    assert not build_route(route).typed_per_filter_config
