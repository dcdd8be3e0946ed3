"""Messages shared by several Istio networking kinds."""

from __future__ import annotations

from pydantic import Field, model_validator

from pilotfish.api.base import ApiModel

__all__ = [
    "Destination",
    "Duration",
    "Percent",
    "PortSelector",
    "StringMatch",
    "TypeWorkloadSelector",
    "WorkloadSelector",
]

# Durations stay strings in the schema (``"1.5s"``); validators parse them with
# ``pilotfish.api.duration.parse_duration_ms`` so that the error names the field.
Duration = str


class Percent(ApiModel):
    """A percentage ``{value: 0.0..100.0}``."""

    value: float = 0.0


class StringMatch(ApiModel):
    """One of ``exact``, ``prefix`` or ``regex`` (RE2 syntax)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> StringMatch:
        given = [n for n in ("exact", "prefix", "regex") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(
                f"only one of exact, prefix, regex may be set (got {', '.join(given)})"
            )
        return self

    @property
    def kind(self) -> str | None:
        """``"exact"``, ``"prefix"``, ``"regex"`` or None when empty."""
        for n in ("exact", "prefix", "regex"):
            if getattr(self, n) is not None:
                return n
        return None


class PortSelector(ApiModel):
    """A port of the destination service."""

    number: int | None = None


class Destination(ApiModel):
    """Where a request goes: a host of the registry, optionally a subset and port."""

    host: str
    subset: str | None = None
    port: PortSelector | None = None


class WorkloadSelector(ApiModel):
    """``networking.istio.io`` WorkloadSelector (ServiceEntry, Sidecar): ``labels``."""

    labels: dict[str, str] = Field(default_factory=dict)


class TypeWorkloadSelector(ApiModel):
    """``istio.type.v1beta1.WorkloadSelector`` (DestinationRule, policies): ``matchLabels``."""

    match_labels: dict[str, str] = Field(default_factory=dict)
