"""IR for telemetry: Istio's standard metrics, tracing and access logs.

These values are what translation resolved for one connection manager or TCP
proxy from mesh config and the Telemetry API (root namespace, then namespace,
then workload). The xDS build turns them into Envoy's stats access logger,
tracer and file access loggers; nothing here is Envoy-specific.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SPAN_SINK_CLUSTER",
    "AccessLog",
    "CustomTag",
    "MetricTagOverride",
    "Metrics",
    "Reporter",
    "Tracing",
    "TracingProvider",
]

# Who reports a metric: the client's proxy ("source"), the server's
# ("destination"), or a waypoint.
Reporter = Literal["source", "destination", "waypoint"]


@dataclass(frozen=True, slots=True)
class MetricTagOverride:
    """Telemetry ``tagOverrides`` entry for one label: removed, or set to
    ``value``, an Envoy substitution format (``%REQ(x-user)%``) or a literal."""

    tag: str
    remove: bool = False
    value: str = ""


@dataclass(frozen=True, slots=True)
class Metrics:
    """Istio's standard metrics as this connection manager or TCP proxy reports
    them. ``disabled`` holds Istio metric names (``istio_requests_total``);
    ``tag_overrides`` maps a metric name to its label changes, in order."""

    reporter: Reporter
    disabled: frozenset[str] = frozenset()
    tag_overrides: tuple[tuple[str, tuple[MetricTagOverride, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class TracingProvider:
    """Where spans go: a Zipkin v2 (JSON over HTTP) or OTLP/gRPC collector,
    reached through the cluster ``cluster`` (the build adds it)."""

    name: str
    kind: Literal["zipkin", "opentelemetry"]
    address: str
    port: int
    cluster: str
    # Zipkin: the collector's endpoint path.
    path: str = "/api/v2/spans"
    max_tag_length: int = 256


@dataclass(frozen=True, slots=True)
class CustomTag:
    """Telemetry ``customTags`` entry: a span tag from a literal, a request
    header or an environment variable of the proxy."""

    tag: str
    kind: Literal["literal", "header", "environment"]
    value: str  # the literal, the header name or the variable name
    default: str = ""


#: The cluster a tracer with ``disable_span_reporting`` sends its spans to: it
#: has no endpoints, so nothing leaves the proxy (``xds.build.tracing``).
SPAN_SINK_CLUSTER = "pilotfish_span_sink"


@dataclass(frozen=True, slots=True)
class Tracing:
    """The tracer of a connection manager: ``sampling`` is a percentage (0-100).

    ``disable_span_reporting`` (Istio's ``disableSpanReporting``) keeps the
    tracer, so trace context is still continued, started and forwarded, but its
    spans go to ``SPAN_SINK_CLUSTER`` instead of ``provider``'s collector."""

    provider: TracingProvider
    sampling: float = 1.0
    custom_tags: tuple[CustomTag, ...] = ()
    disable_span_reporting: bool = False


@dataclass(frozen=True, slots=True)
class AccessLog:
    """One access log: ``path`` (``/dev/stdout``), Istio's default format in
    ``encoding``, or ``text_format`` when set; ``filter`` is a CEL expression
    a request must satisfy to be logged (``""``: every request)."""

    path: str = "/dev/stdout"
    encoding: Literal["TEXT", "JSON"] = "TEXT"
    text_format: str = ""
    filter: str = ""
