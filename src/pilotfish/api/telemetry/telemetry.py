"""``Telemetry``: which metrics, traces and access logs a workload's proxy reports.

A Telemetry in the root namespace without a selector applies mesh-wide, one in
another namespace without a selector to that namespace, and one with
``selector`` (or ``targetRef(s)``) to the selected workloads; a more specific
one replaces a less specific one section by section (translate/telemetry.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pilotfish.api.base import ApiModel
from pilotfish.api.security.common import PolicyTargetReference, TypeWorkloadSelector

__all__ = [
    "API_VERSIONS",
    "AccessLogging",
    "AccessLoggingFilter",
    "CustomTag",
    "MetricName",
    "MetricSelector",
    "Metrics",
    "MetricsOverrides",
    "ProviderRef",
    "TagOverride",
    "TelemetrySpec",
    "Tracing",
    "WorkloadMode",
    "WorkloadModeSelector",
]

API_VERSIONS = frozenset({"telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"})

WorkloadMode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]
MetricName = Literal[
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
]


class ProviderRef(ApiModel):
    name: str


class WorkloadModeSelector(ApiModel):
    mode: WorkloadMode = "CLIENT_AND_SERVER"


class LiteralTag(ApiModel):
    value: str


class HeaderTag(ApiModel):
    name: str
    default_value: str = ""


class EnvironmentTag(ApiModel):
    name: str
    default_value: str = ""


class CustomTag(ApiModel):
    """One span tag: exactly one of ``literal``, ``header``, ``environment``."""

    literal: LiteralTag | None = None
    header: HeaderTag | None = None
    environment: EnvironmentTag | None = None


class Tracing(ApiModel):
    match: WorkloadModeSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    random_sampling_percentage: float | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, CustomTag] = Field(default_factory=dict)
    # Istio's field, accepted; Pilotfish always names spans after the route.
    use_request_id_for_trace_sampling: bool | None = None


class MetricSelector(ApiModel):
    """``metric`` (Istio's enum) or ``customMetric``; ``mode`` client/server side."""

    metric: MetricName | None = None
    custom_metric: str | None = None
    mode: WorkloadMode = "CLIENT_AND_SERVER"


class TagOverride(ApiModel):
    operation: Literal["UPSERT", "REMOVE"] = "UPSERT"
    value: str = ""


class MetricsOverrides(ApiModel):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tag_overrides: dict[str, TagOverride] = Field(default_factory=dict)


class Metrics(ApiModel):
    providers: list[ProviderRef] = Field(default_factory=list)
    overrides: list[MetricsOverrides] = Field(default_factory=list)
    reporting_interval: str | None = None


class AccessLoggingFilter(ApiModel):
    expression: str


class AccessLogging(ApiModel):
    match: WorkloadModeSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    disabled: bool | None = None
    filter: AccessLoggingFilter | None = None


class TelemetrySpec(ApiModel):
    selector: TypeWorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    tracing: list[Tracing] = Field(default_factory=list)
    metrics: list[Metrics] = Field(default_factory=list)
    access_logging: list[AccessLogging] = Field(default_factory=list)
