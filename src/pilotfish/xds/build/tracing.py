"""The tracer of an HTTP connection manager: Zipkin or OpenTelemetry, stock Envoy.

Every connection manager that traces gets Envoy's HCM ``tracing`` block:
``random_sampling`` from the resolved percentage, Istio's standard span tags
(canonical service, revision, namespace and cluster of the proxy's own
workload, read from the environment the agent gives Envoy, so shared listeners
stay free of workload names), the Telemetry API's custom tags, and the
provider:

- Zipkin: JSON v2 spans POSTed to the collector cluster, 128-bit trace ids,
  one span per proxy hop (``shared_span_context: false``, as Istio sets it),
  and W3C ``traceparent`` propagated alongside B3, so callers speaking either
  keep one trace.
- OpenTelemetry: OTLP over gRPC to the collector cluster (HTTP/2). Envoy's
  environment resource detector reads ``OTEL_RESOURCE_ATTRIBUTES``, which the
  agent sets to the workload's ``service.name``.

``disable_span_reporting`` (Istio: no spans reported, while propagation and
sampling are unaffected) keeps the tracer of the provider's kind but points it
at ``ir.SPAN_SINK_CLUSTER``, a cluster with no endpoints: the proxy still
continues an incoming ``traceparent`` / B3 context with its sampled flag,
starts one when a request has none (``random_sampling`` decides) and forwards
it upstream, so the next proxies' spans join the same trace, while each flush
of its own spans fails inside Envoy (no host) and nothing is sent. Leaving the
provider out would switch Envoy's tracer off: no trace could start at that
proxy, the next hop would open one of its own, and B3 headers would go on
naming the caller's span. An OpenTelemetry tracer without an exporter is
rejected by Envoy 1.40 ("must have exactly one of gRPC, HTTP, or custom
exporter"), hence the sink. The collector cluster the provider names (or the
sink) is added by translation (``translate.telemetry.collector_clusters``);
Envoy rejects a tracer whose cluster is missing.
"""

from __future__ import annotations

from dataclasses import replace

from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.tracers.opentelemetry.resource_detectors.v3 import (
    environment_resource_detector_pb2 as env_detector_pb2,
)
from envoy.type.tracing.v3 import custom_tag_pb2
from envoy.type.v3 import percent_pb2

from pilotfish import ir
from pilotfish.peer_labels import (
    ENV_CANONICAL_REVISION,
    ENV_CANONICAL_SERVICE,
    ENV_CLUSTER,
    ENV_NAMESPACE,
    ENV_WORKLOAD,
    UNKNOWN,
)
from pilotfish.xds.build._common import any_of

__all__ = ["OTEL_DETECTOR", "OTEL_TRACER", "ZIPKIN_TRACER", "build_tracing"]

ZIPKIN_TRACER = "envoy.tracers.zipkin"
OTEL_TRACER = "envoy.tracers.opentelemetry"
OTEL_DETECTOR = "envoy.tracers.opentelemetry.resource_detectors.environment"

# Istio's standard span tags -> the variable of the agent's environment holding it.
_STANDARD_TAGS = (
    ("istio.canonical_service", ENV_CANONICAL_SERVICE),
    ("istio.canonical_revision", ENV_CANONICAL_REVISION),
    ("istio.namespace", ENV_NAMESPACE),
    ("istio.workload", ENV_WORKLOAD),
    ("istio.cluster_id", ENV_CLUSTER),
)


def build_tracing(tracing: ir.Tracing) -> hcm_pb2.HttpConnectionManager.Tracing:
    """The HCM ``tracing`` block for ``tracing``."""
    proto = hcm_pb2.HttpConnectionManager.Tracing(
        random_sampling=percent_pb2.Percent(value=tracing.sampling),
        custom_tags=[*_standard_tags(), *(_custom_tag(t) for t in tracing.custom_tags)],
    )
    proto.max_path_tag_length.value = tracing.provider.max_tag_length
    provider = tracing.provider
    if tracing.disable_span_reporting:
        provider = replace(provider, cluster=ir.SPAN_SINK_CLUSTER)
    proto.provider.CopyFrom(_provider(provider))
    return proto


def _provider(p: ir.TracingProvider) -> http_tracer_pb2.Tracing.Http:
    if p.kind == "zipkin":
        zipkin = zipkin_pb2.ZipkinConfig(
            collector_cluster=p.cluster,
            collector_endpoint=p.path,
            collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
            collector_hostname=p.address,
            trace_id_128bit=True,
            trace_context_option=zipkin_pb2.ZipkinConfig.USE_B3_WITH_W3C_PROPAGATION,
        )
        zipkin.shared_span_context.value = False
        return http_tracer_pb2.Tracing.Http(name=ZIPKIN_TRACER, typed_config=any_of(zipkin))
    otel = opentelemetry_pb2.OpenTelemetryConfig()
    otel.grpc_service.envoy_grpc.cluster_name = p.cluster
    otel.grpc_service.envoy_grpc.authority = p.address
    detector = otel.resource_detectors.add()
    detector.name = OTEL_DETECTOR
    detector.typed_config.CopyFrom(any_of(env_detector_pb2.EnvironmentResourceDetectorConfig()))
    return http_tracer_pb2.Tracing.Http(name=OTEL_TRACER, typed_config=any_of(otel))


def _standard_tags() -> list[custom_tag_pb2.CustomTag]:
    return [
        custom_tag_pb2.CustomTag(
            tag=tag,
            environment=custom_tag_pb2.CustomTag.Environment(name=var, default_value=UNKNOWN),
        )
        for tag, var in _STANDARD_TAGS
    ]


def _custom_tag(tag: ir.CustomTag) -> custom_tag_pb2.CustomTag:
    proto = custom_tag_pb2.CustomTag(tag=tag.tag)
    if tag.kind == "literal":
        proto.literal.value = tag.value
    elif tag.kind == "header":
        proto.request_header.name = tag.value
        proto.request_header.default_value = tag.default
    else:
        proto.environment.name = tag.value
        proto.environment.default_value = tag.default
    return proto
