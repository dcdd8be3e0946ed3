"""Telemetry resolution: mesh config, root namespace, namespace and workload levels."""

from __future__ import annotations

from google.protobuf.json_format import MessageToDict

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.model.mesh_config import MeshConfig, parse_mesh_config
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.compose import compose, part_keys
from pilotfish.translate.telemetry import resolve, workload_telemetry
from pilotfish.xds.build import build_all
from pilotfish.xds.types import CLUSTER_TYPE, LISTENER_TYPE

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""


def snapshot(text: str, mesh: MeshConfig | None = None) -> Snapshot:
    result = load_text(SERVICE + "---\n" + text, "inline.yaml")
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_snapshot(result.resources, 1, mesh=mesh or MeshConfig())


def telemetry(name: str, namespace: str, body: str) -> str:
    return (
        f"apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}\n---\n"
    )


def test_defaults_trace_to_the_builtin_collector_at_one_percent_without_logs() -> None:
    got = resolve(snapshot(""), "shop", "", "client")
    assert got.tracing is not None
    assert got.tracing.provider == ir.TracingProvider(
        "zipkin", "zipkin", "127.0.0.1", 9411, "zipkin"
    )
    assert got.tracing.sampling == 1.0
    assert got.access_logs == () and got.metrics_disabled == frozenset()


def test_mesh_config_json_access_log_and_sampling() -> None:
    mesh = parse_mesh_config(
        "accessLogFile: /dev/stdout\naccessLogEncoding: JSON\n"
        "defaultConfig:\n  tracing:\n    sampling: 100\n    zipkin: {address: '127.0.0.1:9999'}\n"
    )
    got = resolve(snapshot("", mesh), "shop", "", "server")
    assert got.access_logs == (ir.AccessLog("/dev/stdout", "JSON"),)
    assert got.tracing is not None and got.tracing.sampling == 100.0
    assert got.tracing.provider.port == 9999


def test_namespace_overrides_root_and_workload_overrides_namespace() -> None:
    text = (
        telemetry("mesh", "istio-system", "  accessLogging: [{providers: [{name: envoy}]}]")
        + telemetry("ns", "shop", "  accessLogging: [{disabled: true}]")
        + telemetry(
            "wl",
            "shop",
            "  selector: {matchLabels: {app: reviews}}\n"
            "  accessLogging: [{filter: {expression: 'response.code >= 400'}}]",
        )
    )
    snap = snapshot(text)
    assert resolve(snap, "other", "", "client").access_logs == (ir.AccessLog(),)
    assert resolve(snap, "shop", "", "client").access_logs == ()
    selected = workload_telemetry(snap, "shop", {"app": "reviews"})
    assert selected == "shop/wl"
    assert workload_telemetry(snap, "shop", {"app": "ratings"}) == ""
    logs = resolve(snap, "shop", selected, "client").access_logs
    assert logs == (ir.AccessLog(filter="response.code >= 400"),)


def test_mode_client_applies_to_outbound_only() -> None:
    body = "  accessLogging: [{match: {mode: CLIENT}, providers: [{name: envoy}]}]"
    snap = snapshot(telemetry("mesh", "istio-system", body))
    assert resolve(snap, "shop", "", "client").access_logs == (ir.AccessLog(),)
    assert resolve(snap, "shop", "", "server").access_logs == ()


def test_metrics_disabled_and_tag_overrides() -> None:
    body = """  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      disabled: true
    - match: {metric: REQUEST_DURATION}
      tagOverrides:
        request_protocol: {operation: REMOVE}
        user: {value: "request.headers['x-user']"}"""
    snap = snapshot(telemetry("ns", "shop", body))
    server = resolve(snap, "shop", "", "server")
    assert server.metrics_disabled == frozenset({"istio_requests_total"})
    assert resolve(snap, "shop", "", "client").metrics_disabled == frozenset()
    assert server.tag_overrides == (
        (
            "istio_request_duration_milliseconds",
            (
                ir.MetricTagOverride("request_protocol", remove=True),
                ir.MetricTagOverride("user", value="%REQ(x-user)%"),
            ),
        ),
    )


def test_all_metrics_disabled_reaches_every_filter_of_the_proxy() -> None:
    body = "  metrics: [{overrides: [{match: {metric: ALL_METRICS}, disabled: true}]}]"
    snap = snapshot(telemetry("metrics-off", "shop", body))
    view = ProxyView("sidecar", "shop", (("app", "reviews"),), interception="REDIRECT")
    filters = [
        c.filter
        for lis in compose(snap, view).listeners
        for c in (*lis.filter_chains, *([lis.default_chain] if lis.default_chain else []))
    ]
    assert filters
    for flt in filters:
        assert flt.metrics is not None
        assert "istio_requests_total" in flt.metrics.disabled


def test_workload_telemetry_enters_the_outbound_key() -> None:
    body = "  selector: {matchLabels: {app: reviews}}\n  tracing: [{randomSamplingPercentage: 50}]"
    snap = snapshot(telemetry("wl", "shop", body))
    reviews = ProxyView("sidecar", "shop", (("app", "reviews"),))
    ratings = ProxyView("sidecar", "shop", (("app", "ratings"),))
    a, b = part_keys(snap, reviews).outbound, part_keys(snap, ratings).outbound
    assert a is not None and b is not None
    assert a.telemetry == "shop/wl" and b.telemetry == "" and a != b
    hcms = [
        c.filter
        for lis in compose(snap, reviews).listeners
        for c in lis.filter_chains
        if isinstance(c.filter, ir.HttpConnectionManager) and lis.direction == "outbound"
    ]
    assert all(h.tracing is not None and h.tracing.sampling == 50 for h in hcms)


def test_extension_providers_zipkin_and_file_log() -> None:
    mesh = parse_mesh_config(
        """
extensionProviders:
- name: tempo
  zipkin: {service: tempo.tracing.svc.cluster.local, port: 9411}
- name: json-file
  envoyFileAccessLog:
    path: /dev/stdout
    logFormat: {labels: {code: '%RESPONSE_CODE%'}}
defaultProviders:
  tracing: [tempo]
  accessLogging: [json-file]
"""
    )
    got = resolve(snapshot("", mesh), "shop", "", "client")
    assert got.tracing is not None
    assert got.tracing.provider.cluster == "zipkin|tempo.tracing.svc.cluster.local:9411"
    assert got.access_logs == (ir.AccessLog("/dev/stdout", "JSON", '{"code": "%RESPONSE_CODE%"}'),)


def test_disabled_span_reporting_keeps_the_tracer_and_sends_spans_to_the_sink() -> None:
    """A workload's ``disableSpanReporting`` keeps sampling and the tracer (so trace
    context still propagates) but its Zipkin reporter names the endpoint-less sink,
    and the proxy gets no collector cluster; the neighbour still reports."""
    body = (
        "  selector: {matchLabels: {app: reviews}}\n"
        "  tracing: [{disableSpanReporting: true, randomSamplingPercentage: 25}]"
    )
    snap = snapshot(telemetry("quiet", "shop", body))

    def built(app: str) -> tuple[list[dict[str, object]], set[str]]:
        view = ProxyView("sidecar", "shop", (("app", app),), interception="NONE")
        out = build_all(compose(snap, view))
        tracers: list[dict[str, object]] = []

        def walk(o: object) -> None:
            if isinstance(o, dict):
                if "randomSampling" in o and "provider" in o:
                    tracers.append(o)
                for v in o.values():
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)

        for listener in out[LISTENER_TYPE]:
            walk(MessageToDict(listener))
        return tracers, {c.name for c in out[CLUSTER_TYPE]}  # type: ignore[attr-defined]

    tracers, clusters = built("reviews")
    assert tracers, "the silent workload lost its tracer"
    for tracer in tracers:
        assert tracer["randomSampling"] == {"value": 25.0}
        config = tracer["provider"]["typedConfig"]  # type: ignore[index]
        assert config["collectorCluster"] == ir.SPAN_SINK_CLUSTER
        assert config["traceContextOption"] == "USE_B3_WITH_W3C_PROPAGATION"
    assert ir.SPAN_SINK_CLUSTER in clusters and "zipkin" not in clusters

    tracers, clusters = built("ratings")
    assert tracers and all(
        t["provider"]["typedConfig"]["collectorCluster"] == "zipkin"  # type: ignore[index]
        for t in tracers
    )
    assert "zipkin" in clusters and ir.SPAN_SINK_CLUSTER not in clusters
