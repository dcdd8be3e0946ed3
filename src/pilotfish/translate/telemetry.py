"""What each proxy reports: Istio's metrics, tracing and access logs, resolved.

Theory of operation. Values come from three levels, each replacing the one
before it section by section (``tracing``, ``metrics``, ``accessLogging``):

1. the mesh config (``accessLogFile``/``Encoding``/``Format``,
   ``defaultProviders``, ``defaultConfig.tracing``), then a Telemetry in the
   root namespace without a selector (mesh-wide);
2. a Telemetry in the proxy's namespace without a selector;
3. a Telemetry of the proxy's namespace selecting its workload (``selector``).

At one level, only entries whose ``match.mode`` covers the side apply:
``CLIENT`` is the outbound side (and gateways), ``SERVER`` the inbound side.
Several Telemetry resources at the same level are ordered by name and the
first wins, so equal inputs always give equal output. ``targetRef(s)``
attach to Gateway-API gateways and waypoints; Pilotfish does not apply such a
Telemetry to any proxy yet.

``resolve`` is a pure function of (snapshot, namespace, selecting Telemetry,
side). Outbound translation is shared per ``OutboundKey``, so the selecting
Telemetry's ``namespace/name`` is part of that key (``workload_telemetry``
finds it); ``apply_telemetry`` then fills every connection manager and TCP
proxy of a set of listeners.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from pilotfish import ir
from pilotfish.api.resource import Resource
from pilotfish.api.telemetry.expressions import tag_value_format
from pilotfish.api.telemetry.telemetry import (
    AccessLogging,
    MetricsOverrides,
    TelemetrySpec,
    WorkloadModeSelector,
)
from pilotfish.api.telemetry.telemetry import Metrics as MetricsSection
from pilotfish.api.telemetry.telemetry import Tracing as TracingSection
from pilotfish.model.mesh_config import ACCESS_LOG_STDOUT, MeshConfig
from pilotfish.model.mesh_telemetry import DEFAULT_ZIPKIN_ADDRESS, ExtensionProvider
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.telemetry_collectors import in_mesh

__all__ = [
    "ISTIO_METRICS",
    "TELEMETRY",
    "ResolvedTelemetry",
    "Side",
    "apply_telemetry",
    "resolve",
    "workload_telemetry",
]

TELEMETRY = "Telemetry"
Side = Literal["client", "server"]

#: Istio's metric enum -> the standard metric names it covers.
ISTIO_METRICS: Mapping[str, tuple[str, ...]] = {
    "REQUEST_COUNT": ("istio_requests_total",),
    "REQUEST_DURATION": ("istio_request_duration_milliseconds",),
    "REQUEST_SIZE": ("istio_request_bytes",),
    "RESPONSE_SIZE": ("istio_response_bytes",),
    "TCP_OPENED_CONNECTIONS": ("istio_tcp_connections_opened_total",),
    "TCP_CLOSED_CONNECTIONS": ("istio_tcp_connections_closed_total",),
    "TCP_SENT_BYTES": ("istio_tcp_sent_bytes_total",),
    "TCP_RECEIVED_BYTES": ("istio_tcp_received_bytes_total",),
    "GRPC_REQUEST_MESSAGES": ("istio_request_messages_total",),
    "GRPC_RESPONSE_MESSAGES": ("istio_response_messages_total",),
}
_ALL_METRICS = tuple(name for names in ISTIO_METRICS.values() for name in names)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ResolvedTelemetry:
    """One side's telemetry: metric changes, the tracer (None: off), access logs."""

    metrics_disabled: frozenset[str] = frozenset()
    tag_overrides: tuple[tuple[str, tuple[ir.MetricTagOverride, ...]], ...] = ()
    tracing: ir.Tracing | None = None
    access_logs: tuple[ir.AccessLog, ...] = ()


def _applies(resource: Resource) -> bool:
    spec = resource.spec
    return isinstance(spec, TelemetrySpec) and spec.target_ref is None and not spec.target_refs


def _unselected(snapshot: Snapshot, namespace: str) -> Resource | None:
    found = [
        r
        for r in snapshot.of_kind(TELEMETRY)
        if r.namespace == namespace and _applies(r) and not _selector(r)
    ]
    return min(found, key=lambda r: r.name) if found else None


def _selector(resource: Resource) -> Mapping[str, str]:
    spec = resource.spec
    assert isinstance(spec, TelemetrySpec)
    return spec.selector.match_labels if spec.selector is not None else {}


def workload_telemetry(snapshot: Snapshot, namespace: str, labels: Mapping[str, str]) -> str:
    """``namespace/name`` of the Telemetry selecting a workload (``""``: none)."""
    found = [
        r
        for r in snapshot.of_kind(TELEMETRY)
        if r.namespace == namespace
        and _applies(r)
        and (wanted := _selector(r))
        and all(labels.get(k) == v for k, v in wanted.items())
    ]
    best = min(found, key=lambda r: r.name) if found else None
    return f"{best.namespace}/{best.name}" if best is not None else ""


def _levels(snapshot: Snapshot, namespace: str, selected: str) -> list[TelemetrySpec]:
    """The Telemetry specs that apply, least specific first."""
    chain: list[Resource | None] = [_unselected(snapshot, snapshot.root_namespace)]
    if namespace != snapshot.root_namespace:
        chain.append(_unselected(snapshot, namespace))
    if selected:
        chain += [r for r in snapshot.of_kind(TELEMETRY) if f"{r.namespace}/{r.name}" == selected]
    return [r.spec for r in chain if r is not None and isinstance(r.spec, TelemetrySpec)]


def _covers(match: WorkloadModeSelector | None, side: Side) -> bool:
    mode = match.mode if match is not None else "CLIENT_AND_SERVER"
    return mode == "CLIENT_AND_SERVER" or mode == ("CLIENT" if side == "client" else "SERVER")


def _most_specific(specs: Sequence[TelemetrySpec], pick: str, side: Side) -> list[_T] | None:
    """The section ``pick`` of the most specific level that has entries for ``side``."""
    chosen: list[_T] | None = None
    for spec in specs:
        # Metric entries have no match of their own (their overrides do).
        entries: list[_T] = [
            e for e in getattr(spec, pick) if _covers(getattr(e, "match", None), side)
        ]
        if entries:
            chosen = entries
    return chosen


def resolve(snapshot: Snapshot, namespace: str, selected: str, side: Side) -> ResolvedTelemetry:
    """Telemetry for one side of a proxy of ``namespace`` (``selected``: the
    ``namespace/name`` of the Telemetry selecting its workload, or ``""``)."""
    specs = _levels(snapshot, namespace, selected)
    mesh = snapshot.mesh
    disabled, overrides = _metrics(mesh, _most_specific(specs, "metrics", side), side)
    return ResolvedTelemetry(
        metrics_disabled=disabled,
        tag_overrides=overrides,
        tracing=in_mesh(snapshot, _tracing(mesh, _most_specific(specs, "tracing", side))),
        access_logs=_access_logs(mesh, _most_specific(specs, "access_logging", side)),
    )


def _override_metrics(override: MetricsOverrides) -> tuple[str, ...]:
    match = override.match
    if match is None or (match.metric is None and match.custom_metric is None):
        return _ALL_METRICS
    if match.custom_metric is not None:
        return (match.custom_metric,)
    if match.metric == "ALL_METRICS" or match.metric is None:
        return _ALL_METRICS
    return ISTIO_METRICS[match.metric]


def _metrics(
    mesh: MeshConfig, sections: list[MetricsSection] | None, side: Side
) -> tuple[frozenset[str], tuple[tuple[str, tuple[ir.MetricTagOverride, ...]], ...]]:
    if sections is None:
        default = mesh.default_providers.metrics if mesh.default_providers else None
        if default is not None and default and not _has_prometheus(mesh, default):
            return frozenset(_ALL_METRICS), ()
        return frozenset(), ()
    disabled: set[str] = set()
    tags: dict[str, list[ir.MetricTagOverride]] = {}
    for section in sections:
        names = [p.name for p in section.providers]
        if names and not _has_prometheus(mesh, names):
            disabled.update(_ALL_METRICS)
        for override in section.overrides:
            if not _covers(override.match, side):  # type: ignore[arg-type]
                continue
            metrics = _override_metrics(override)
            if override.disabled is not None:
                disabled.difference_update(metrics)
                if override.disabled:
                    disabled.update(metrics)
            for tag, change in override.tag_overrides.items():
                value = "" if change.operation == "REMOVE" else tag_value_format(change.value)
                if value is None:
                    continue  # rejected by validation; never applied half-understood
                for metric in metrics:
                    tags.setdefault(metric, []).append(
                        ir.MetricTagOverride(tag, change.operation == "REMOVE", value)
                    )
    return frozenset(disabled), tuple((m, tuple(v)) for m, v in sorted(tags.items()))


def _has_prometheus(mesh: MeshConfig, names: Iterable[str]) -> bool:
    for name in names:
        provider = mesh.provider(name)
        if provider is None and name == "prometheus":
            return True
        if provider is not None and provider.prometheus is not None:
            return True
    return False


def _tracer(mesh: MeshConfig, name: str) -> ir.TracingProvider | None:
    provider: ExtensionProvider | None = mesh.provider(name)
    if provider is not None and provider.zipkin is not None:
        z = provider.zipkin
        return ir.TracingProvider(
            name,
            "zipkin",
            z.service,
            z.port,
            f"zipkin|{z.service}:{z.port}",
            z.path,
            z.max_tag_length,
        )
    if provider is not None and provider.opentelemetry is not None:
        o = provider.opentelemetry
        return ir.TracingProvider(
            name,
            "opentelemetry",
            o.service,
            o.port,
            f"opentelemetry|{o.service}:{o.port}",
            max_tag_length=o.max_tag_length,
        )
    if provider is None and name == "zipkin":
        return _builtin_zipkin(mesh)
    return None


def _builtin_zipkin(mesh: MeshConfig) -> ir.TracingProvider:
    address = mesh.proxy_defaults.tracing.zipkin.address or DEFAULT_ZIPKIN_ADDRESS
    host, _, port = address.rpartition(":")
    return ir.TracingProvider("zipkin", "zipkin", host, int(port), "zipkin")


def _tracing(mesh: MeshConfig, sections: list[TracingSection] | None) -> ir.Tracing | None:
    defaults = mesh.proxy_defaults.tracing
    default_names = mesh.default_providers.tracing if mesh.default_providers else []
    section = sections[0] if sections else None
    names = [p.name for p in section.providers] if section and section.providers else []
    provider = None
    for name in names or default_names or ["zipkin"]:
        provider = _tracer(mesh, name)
        if provider is not None:
            break
    if provider is None:
        return None
    sampling = defaults.sampling
    custom: tuple[ir.CustomTag, ...] = ()
    no_report = False
    if section is not None:
        if section.random_sampling_percentage is not None:
            sampling = section.random_sampling_percentage
        no_report = bool(section.disable_span_reporting)
        custom = tuple(_custom_tag(tag, c) for tag, c in sorted(section.custom_tags.items()))
    return ir.Tracing(provider, sampling, custom, no_report)


def _custom_tag(tag: str, c: object) -> ir.CustomTag:
    literal, header, env = (getattr(c, k) for k in ("literal", "header", "environment"))
    if literal is not None:
        return ir.CustomTag(tag, "literal", literal.value)
    if header is not None:
        return ir.CustomTag(tag, "header", header.name, header.default_value)
    return ir.CustomTag(tag, "environment", env.name, env.default_value)


def _mesh_log(mesh: MeshConfig, path: str = "") -> ir.AccessLog:
    return ir.AccessLog(
        path or mesh.access_log_file or ACCESS_LOG_STDOUT,
        mesh.access_log_encoding,
        mesh.access_log_format,
    )


def _provider_log(mesh: MeshConfig, name: str, filter_: str) -> ir.AccessLog | None:
    provider = mesh.provider(name)
    if provider is None:
        return replace(_mesh_log(mesh), filter=filter_) if name == "envoy" else None
    file_log = provider.envoy_file_access_log
    if file_log is None:
        return None
    fmt = file_log.log_format
    if fmt is not None and fmt.labels is not None:
        # A JSON log of the given keys: the format is carried as a JSON object.
        return ir.AccessLog(file_log.path, "JSON", json.dumps(fmt.labels), filter_)
    text = fmt.text if fmt is not None and fmt.text is not None else ""
    return ir.AccessLog(file_log.path, "TEXT", text, filter_)


def _access_logs(
    mesh: MeshConfig, sections: list[AccessLogging] | None
) -> tuple[ir.AccessLog, ...]:
    default_names = mesh.default_providers.access_logging if mesh.default_providers else []
    if sections is None:
        logs = [log for n in default_names if (log := _provider_log(mesh, n, ""))]
        if not default_names and mesh.access_log_file:
            logs.append(_mesh_log(mesh))
        return tuple(logs)
    out: list[ir.AccessLog] = []
    for section in sections:
        if section.disabled:
            continue
        names = [p.name for p in section.providers] or default_names or ["envoy"]
        expr = section.filter.expression if section.filter is not None else ""
        out += [log for n in names if (log := _provider_log(mesh, n, expr))]
    return tuple(dict.fromkeys(out))


def _fill(flt: ir.NetworkFilter, t: ResolvedTelemetry, reporter: ir.Reporter) -> ir.NetworkFilter:
    base = flt.metrics if flt.metrics is not None else ir.Metrics(reporter=reporter)
    metrics = replace(base, disabled=t.metrics_disabled, tag_overrides=t.tag_overrides)
    if isinstance(flt, ir.TcpProxy):
        return replace(flt, metrics=metrics, access_logs=t.access_logs)
    return replace(flt, metrics=metrics, tracing=t.tracing, access_logs=t.access_logs)


def apply_telemetry(
    listeners: Iterable[ir.Listener], client: ResolvedTelemetry, server: ResolvedTelemetry
) -> tuple[ir.Listener, ...]:
    """``listeners`` with telemetry on every filter: inbound ones get ``server``,
    outbound and gateway ones ``client``."""
    out = []
    for lis in listeners:
        side = server if lis.direction == "inbound" else client
        reporter: ir.Reporter = "destination" if lis.direction == "inbound" else "source"

        def chain(
            c: ir.FilterChain, s: ResolvedTelemetry = side, r: ir.Reporter = reporter
        ) -> ir.FilterChain:
            return replace(c, filter=_fill(c.filter, s, r))

        default = chain(lis.default_chain) if lis.default_chain is not None else None
        out.append(
            replace(
                lis, filter_chains=tuple(chain(c) for c in lis.filter_chains), default_chain=default
            )
        )
    return tuple(out)
