"""IR metrics -> Envoy stats access loggers emitting Istio's standard metrics.

Theory of operation: Envoy's stats access logger (``envoy.access_loggers.stats``)
turns each logged request or connection into counter increments and histogram
samples whose tags are formatted from command operators (``%RESPONSE_CODE%``).
Here every label is first a format (the layout of Istio's labels, below) and
then packed into one tag per stat (below). One logger
holds every metric for one *variant* of a request; variants differ in how the
labels are filled, and an access-log filter picks the variant:

- the reporter: the destination proxy describes the caller from what the
  caller's proxy sent, the source proxy describes itself;
- at the destination, whether the connection is mTLS: only then is the
  caller's record header (moved into metadata and off the request,
  ``peer_headers.py``; one packed field gives its ``source_*`` labels)
  believed (the server's inbound mTLS chain accepts mesh certificates
  only), and ``source_principal`` is the verified peer
  certificate's URI SAN. A plaintext caller is ``unknown``. Usually the filter
  chain already knows (``peer_certified``: its TLS requires a client
  certificate, or it has no TLS), and only that variant is configured; a chain
  that may see both gets both, picked per request by CEL ``connection.mtls``,
  which is far dearer than a header match, so it runs after the header filter;
- HTTP or gRPC (the request's ``content-type``), for ``request_protocol``
  and ``grpc_response_status``.

At the source, the destination's workload labels come from the metadata the
control plane puts on each endpoint (``%UPSTREAM_METADATA%``), so they name the
workload that really answered and cannot be claimed by it.

Each stat carries all its labels in one packed tag (``pilotfish.packed_labels``):
Envoy's per-request cost grows with the number of tags (each is formatted
and copied into dynamic stat-name storage before the lookup), far less with
the operators one tag's format holds (``bench/stats_tags_cost.py``). Labels
about the proxy's own workload are not evaluated by Envoy at all: the packed
tag marks them, and the agent fills them from the facts it also gives
Envoy's environment (``pilotfish.peer_labels``) when it serves the metrics,
so the configuration is the same for every proxy with the same view and
Envoy does no per-request work for them. Envoy names a stat
``<stat_prefix>.<name>`` and prints it as
``envoy_istio_<name>{pilotfish_labels="..."}``; the agent's metrics endpoints
turn that into Istio's ``istio_<name>{reporter="...",...}``.

TCP proxies log once when the upstream connection is up (connections opened)
and once when the connection ends (closed, bytes). TCP carries no headers, so
a TCP destination knows the caller by its certificate alone.

Telemetry overrides apply last: a disabled metric is left out, a removed tag
dropped, and a tag with a value gets that value as its format.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as data_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.stats.v3 import stats_pb2
from envoy.type.matcher.v3 import string_pb2

from pilotfish import ir
from pilotfish.packed_labels import PACKED_TAG, RECORD, REMOVED, pack
from pilotfish.peer_labels import (
    CALLER_PRINCIPAL_STATE,
    CALLER_RECORD_STATE,
    DEST_SERVICE_HEADER,
    DEST_SERVICE_NAME_HEADER,
    DEST_SERVICE_NAMESPACE_HEADER,
    ENDPOINT_RECORD_KEY,
    ENV_PRINCIPAL,
    PEER_HEADER,
    PEER_HEADERS,
    PEER_SUFFIXES,
    UNKNOWN,
    UPSTREAM_METADATA_NAMESPACE,
)
from pilotfish.xds.build._common import any_of
from pilotfish.xds.build.grpc_messages import message_count
from pilotfish.xds.build.peer_headers import peer_metadata

__all__ = [
    "GRPC_METRICS",
    "HTTP_METRICS",
    "STATS_ACCESS_LOG",
    "STAT_PREFIX",
    "TCP_METRICS",
    "build_http_stats_logs",
    "build_tcp_stats_logs",
]

STATS_ACCESS_LOG = "envoy.access_loggers.stats"
_CEL_FILTER = "envoy.access_loggers.extension_filters.cel"
# Envoy requires a prefix; the agent turns "envoy_istio_" back into "istio_".
STAT_PREFIX = "istio"

Unit = stats_pb2.Config.Histogram.Unit
Labels = dict[str, str]


@dataclass(frozen=True, slots=True)
class _Metric:
    """One Istio metric: a counter adds ``value`` (a format) or 1; a histogram
    records ``value`` in ``unit``."""

    name: str  # Istio's name, "istio_requests_total"
    kind: str  # "counter" | "histogram"
    value: str = ""
    unit: int = Unit.Unspecified


HTTP_METRICS: tuple[_Metric, ...] = (
    _Metric("istio_requests_total", "counter"),
    _Metric("istio_request_duration_milliseconds", "histogram", "%DURATION%", Unit.Milliseconds),
    _Metric("istio_request_bytes", "histogram", "%BYTES_RECEIVED%", Unit.Bytes),
    _Metric("istio_response_bytes", "histogram", "%BYTES_SENT%", Unit.Bytes),
)
# gRPC requests also count their messages (``xds/build/grpc_messages.py``).
GRPC_METRICS: tuple[_Metric, ...] = (
    *HTTP_METRICS,
    _Metric("istio_request_messages_total", "counter", message_count("request")),
    _Metric("istio_response_messages_total", "counter", message_count("response")),
)
# When the upstream connection is up, and when the connection ends.
_TCP_OPEN_METRICS = (_Metric("istio_tcp_connections_opened_total", "counter"),)
_TCP_END_METRICS = (
    _Metric("istio_tcp_connections_closed_total", "counter"),
    _Metric("istio_tcp_sent_bytes_total", "counter", "%BYTES_SENT%"),
    _Metric("istio_tcp_received_bytes_total", "counter", "%BYTES_RECEIVED%"),
)
TCP_METRICS = _TCP_OPEN_METRICS + _TCP_END_METRICS


def _env(var: str) -> str:
    return f"%ENVIRONMENT({var})%"


def _local_labels(side: str) -> Labels:
    """``<side>_workload`` ... of the proxy's own workload, from its environment."""
    labels = {f"{side}_{suffix}": _env(var) for suffix, _header, var in PEER_HEADERS}
    labels[f"{side}_principal"] = _env(ENV_PRINCIPAL)
    return labels


def _peer_labels(side: str, *, trusted: bool) -> Labels:
    """``<side>_*`` of the peer, if trusted: one record field for them all, from
    the header its proxy sent (moved into metadata by the server proxy,
    ``peer_headers.build_peer_metadata``); else each ``unknown``."""
    if trusted:
        return {f"{side}{RECORD}": peer_metadata(PEER_HEADER)}
    return {f"{side}_{suffix}": UNKNOWN for suffix in PEER_SUFFIXES}


def _upstream_labels(side: str) -> Labels:
    """``<side>_*`` of the upstream host: one record field, from the metadata the
    control plane put on its endpoint (``endpoints.build_lb_endpoint``). A host
    without it (a passthrough destination) gets ``unknown`` for each, as in Istio."""
    key = f"{UPSTREAM_METADATA_NAMESPACE}:{ENDPOINT_RECORD_KEY}"
    return {f"{side}{RECORD}": f"%UPSTREAM_METADATA({key})%"}


def _service_labels(*, known: bool, inbound: bool) -> Labels:
    """The called service: on the client side from the headers its route set,
    on the server side from the metadata they were moved into."""
    if not known:
        return dict.fromkeys(
            ("destination_service", "destination_service_name", "destination_service_namespace"),
            UNKNOWN,
        )

    def read(header: str) -> str:
        return peer_metadata(header) if inbound else f"%REQ({header})%"

    return {
        "destination_service": read(DEST_SERVICE_HEADER),
        "destination_service_name": read(DEST_SERVICE_NAME_HEADER),
        "destination_service_namespace": read(DEST_SERVICE_NAMESPACE_HEADER),
    }


def _identity_labels(reporter: ir.Reporter, *, mtls: bool, http: bool) -> Labels:
    """Source and destination labels for one variant (see the module docstring)."""
    if reporter == "waypoint":
        # The caller as the waypoint's HBONE listener recorded it: its verified
        # identity and its node proxy's peer record (``xds.build.waypoint``).
        labels = {
            f"source{RECORD}": f"%FILTER_STATE({CALLER_RECORD_STATE}:PLAIN)%",
            "source_principal": f"%FILTER_STATE({CALLER_PRINCIPAL_STATE}:PLAIN)%",
        }
        labels |= _upstream_labels("destination")
        labels["destination_principal"] = "%UPSTREAM_PEER_URI_SAN%"
        labels |= _service_labels(known=http, inbound=False)
        labels["connection_security_policy"] = "mutual_tls"
        return labels
    if reporter == "destination":
        labels = _peer_labels("source", trusted=mtls and http)
        labels["source_principal"] = "%DOWNSTREAM_PEER_URI_SAN%" if mtls else UNKNOWN
        labels |= _local_labels("destination")
        if not mtls:
            labels["destination_principal"] = UNKNOWN
        labels |= _service_labels(known=mtls and http, inbound=True)
        labels["connection_security_policy"] = "mutual_tls" if mtls else "none"
        return labels
    labels = _local_labels("source")
    labels |= _upstream_labels("destination")
    labels["destination_principal"] = "%UPSTREAM_PEER_URI_SAN%"
    labels |= _service_labels(known=http, inbound=False)
    labels["connection_security_policy"] = UNKNOWN
    return labels


def _request_labels(protocol: str) -> Labels:
    if protocol == "tcp":
        return {"request_protocol": "tcp", "response_flags": "%RESPONSE_FLAGS%"}
    labels = {"request_protocol": protocol, "response_code": "%RESPONSE_CODE%"}
    if protocol == "grpc":
        # Istio's value for HTTP is "", which Prometheus reads as no label at
        # all; Envoy refuses an empty format, so HTTP leaves the tag out.
        labels["grpc_response_status"] = "%GRPC_STATUS_NUMBER%"
    labels["response_flags"] = "%RESPONSE_FLAGS%"
    return labels


def _in_record(labels: Labels, tag: str) -> bool:
    """Whether a record field of ``labels`` gives ``tag`` (``source_app`` of ``source~``)."""
    side, _, suffix = tag.partition("_")
    return f"{side}{RECORD}" in labels and suffix in PEER_SUFFIXES


def _with_overrides(labels: Labels, overrides: Sequence[ir.MetricTagOverride]) -> Labels:
    result = dict(labels)
    for override in overrides:
        if override.remove or not override.value:
            # Envoy refuses an empty format; an empty label is no label in Prometheus.
            result.pop(override.tag, None)
            if _in_record(result, override.tag):
                result[f"{override.tag}{REMOVED}"] = ""
        else:
            result.pop(f"{override.tag}{REMOVED}", None)
            result[override.tag] = override.value
    return result


def _stats_config(
    metrics: Iterable[_Metric], labels: Labels, conf: ir.Metrics
) -> stats_pb2.Config | None:
    """One logger's stats for ``metrics`` that ``conf`` keeps; None when none is left."""
    overrides: Mapping[str, tuple[ir.MetricTagOverride, ...]] = dict(conf.tag_overrides)
    config = stats_pb2.Config(stat_prefix=STAT_PREFIX)
    for metric in metrics:
        if metric.name in conf.disabled:
            continue
        packed = pack(_with_overrides(labels, overrides.get(metric.name, ())).items())
        tags = [stats_pb2.Config.Tag(name=PACKED_TAG, value_format=packed)]
        stat = stats_pb2.Config.Stat(name=metric.name.removeprefix("istio_"), tags=tags)
        if metric.kind == "counter":
            counter = config.counters.add(stat=stat)
            if metric.value:
                counter.value_format = metric.value
            else:
                counter.value_fixed.value = 1
        else:
            config.histograms.add(stat=stat, unit=metric.unit, value_format=metric.value)
    if not config.counters and not config.histograms:
        return None
    return config


def _cel(expression: str) -> accesslog_pb2.AccessLogFilter:
    ext = cel_pb2.ExpressionFilter(expression=expression)
    return accesslog_pb2.AccessLogFilter(
        extension_filter=accesslog_pb2.ExtensionFilter(name=_CEL_FILTER, typed_config=any_of(ext))
    )


def _grpc_filter(grpc: bool) -> accesslog_pb2.AccessLogFilter:
    """Requests whose content-type starts (or, ``grpc=False``, does not) with application/grpc."""
    matcher = rc_pb2.HeaderMatcher(
        name="content-type",
        string_match=string_pb2.StringMatcher(prefix="application/grpc"),
        invert_match=not grpc,
        treat_missing_header_as_empty=True,
    )
    return accesslog_pb2.AccessLogFilter(header_filter=accesslog_pb2.HeaderFilter(header=matcher))


def _log_type_filter(kind: int) -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(log_type_filter=accesslog_pb2.LogTypeFilter(types=[kind]))


def _access_log(
    config: stats_pb2.Config | None, filters: Sequence[accesslog_pb2.AccessLogFilter]
) -> list[accesslog_pb2.AccessLog]:
    if config is None:
        return []
    log = accesslog_pb2.AccessLog(name=STATS_ACCESS_LOG, typed_config=any_of(config))
    if len(filters) == 1:
        log.filter.CopyFrom(filters[0])
    elif filters:
        log.filter.and_filter.filters.extend(filters)
    return [log]


@dataclass(frozen=True, slots=True)
class _Variant:
    """Whether the labels are those of an mTLS connection, and whether a CEL
    filter must check it per request (the chain cannot tell)."""

    mtls: bool
    checked: bool


def _mtls_variants(reporter: ir.Reporter, peer_certified: bool | None) -> tuple[_Variant, ...]:
    """The destination's labels depend on mTLS (known from the chain, or checked
    per request); the source has one variant, unfiltered (its ``mtls`` is unused)."""
    if reporter != "destination":
        return (_Variant(mtls=True, checked=False),)
    if peer_certified is None:
        return (_Variant(mtls=True, checked=True), _Variant(mtls=False, checked=True))
    return (_Variant(mtls=peer_certified, checked=False),)


def _mtls_filters(variant: _Variant) -> list[accesslog_pb2.AccessLogFilter]:
    if not variant.checked:
        return []
    return [_cel("connection.mtls" if variant.mtls else "!connection.mtls")]


def build_http_stats_logs(
    conf: ir.Metrics, peer_certified: bool | None = None
) -> list[accesslog_pb2.AccessLog]:
    """The stats loggers of an HTTP connection manager reporting ``conf`` on a
    filter chain whose connections are all mTLS (``peer_certified`` True), all
    plaintext (False), or either (None)."""
    logs: list[accesslog_pb2.AccessLog] = []
    variants = _mtls_variants(conf.reporter, peer_certified)
    for variant, protocol in itertools.product(variants, ("http", "grpc")):
        labels: Labels = {"reporter": conf.reporter}
        labels |= _identity_labels(conf.reporter, mtls=variant.mtls, http=True)
        labels |= _request_labels(protocol)
        # An and_filter stops at the first false filter: the cheap header match first.
        filters = [_grpc_filter(protocol == "grpc"), *_mtls_filters(variant)]
        metrics = GRPC_METRICS if protocol == "grpc" else HTTP_METRICS
        logs += _access_log(_stats_config(metrics, labels, conf), filters)
    return logs


def build_tcp_stats_logs(
    conf: ir.Metrics, peer_certified: bool | None = None
) -> list[accesslog_pb2.AccessLog]:
    """The stats loggers of a TCP proxy reporting ``conf`` (the proxy must flush
    its access log when the upstream connection is established); ``peer_certified``
    as for :func:`build_http_stats_logs`."""
    logs: list[accesslog_pb2.AccessLog] = []
    phases = (
        (_TCP_OPEN_METRICS, data_pb2.TcpUpstreamConnected),
        (_TCP_END_METRICS, data_pb2.TcpConnectionEnd),
    )
    variants = _mtls_variants(conf.reporter, peer_certified)
    for variant, (metrics, kind) in itertools.product(variants, phases):
        labels: Labels = {"reporter": conf.reporter}
        labels |= _identity_labels(conf.reporter, mtls=variant.mtls, http=False)
        labels |= _request_labels("tcp")
        filters = [_log_type_filter(kind), *_mtls_filters(variant)]
        logs += _access_log(_stats_config(metrics, labels, conf), filters)
    return logs
