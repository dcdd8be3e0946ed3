"""Semantic checks of a Telemetry, following Istio's validation rules."""

from __future__ import annotations

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.telemetry.expressions import SUPPORTED_FORMS, tag_value_format
from pilotfish.api.telemetry.telemetry import CustomTag, MetricsOverrides, TelemetrySpec
from pilotfish.api.validation.findings import Findings
from pilotfish.api.validation.policy_target import check_policy_target

__all__ = ["validate"]


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, TelemetrySpec)
    f = Findings(resource)
    check_policy_target(f, resource, spec.selector, spec.target_ref, spec.target_refs)
    for i, tracing in enumerate(spec.tracing):
        path = f"spec.tracing[{i}]"
        pct = tracing.random_sampling_percentage
        if pct is not None and not 0.0 <= pct <= 100.0:
            f.error(f"{path}.randomSamplingPercentage", "must be between 0 and 100")
        for tag, custom in tracing.custom_tags.items():
            _check_custom_tag(f, f"{path}.customTags.{tag}", custom)
    for i, metrics in enumerate(spec.metrics):
        for j, override in enumerate(metrics.overrides):
            _check_override(f, f"spec.metrics[{i}].overrides[{j}]", override)
    for i, log in enumerate(spec.access_logging):
        if log.filter is not None and not log.filter.expression.strip():
            f.error(f"spec.accessLogging[{i}].filter.expression", "must not be empty")
    return f.items


def _check_custom_tag(f: Findings, path: str, tag: CustomTag) -> None:
    kinds = [k for k in (tag.literal, tag.header, tag.environment) if k is not None]
    if len(kinds) != 1:
        f.error(path, "set exactly one of literal, header, environment")
    if tag.header is not None and not tag.header.name:
        f.error(f"{path}.header.name", "must not be empty")
    if tag.environment is not None and not tag.environment.name:
        f.error(f"{path}.environment.name", "must not be empty")


def _check_override(f: Findings, path: str, override: MetricsOverrides) -> None:
    match = override.match
    if match is not None and match.metric is not None and match.custom_metric is not None:
        f.error(f"{path}.match", "set only one of metric and customMetric")
    for tag, change in override.tag_overrides.items():
        where = f"{path}.tagOverrides.{tag}"
        if change.operation == "REMOVE":
            if change.value:
                f.error(f"{where}.value", "must be empty when operation is REMOVE")
            continue
        if not change.value:
            f.error(f"{where}.value", "must be set when operation is UPSERT")
        elif tag_value_format(change.value) is None:
            f.error(
                f"{where}.value",
                f"unsupported expression {change.value!r}: use {SUPPORTED_FORMS}",
            )
