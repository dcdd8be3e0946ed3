"""The telemetry part of the mesh config: extension providers and defaults.

Istio's ``meshConfig.extensionProviders`` names the places telemetry goes (a
Zipkin or OpenTelemetry collector, a file access log, Prometheus), and
``defaultProviders`` says which of them apply when no Telemetry resource
chooses. ``defaultConfig.tracing`` holds the proxies' tracing defaults: the
sampling percentage and the built-in Zipkin-compatible collector's address.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from pilotfish.api.base import ApiModel
from pilotfish.api.duration import parse_duration_ms

__all__ = [
    "BUILTIN_PROVIDERS",
    "DEFAULT_ZIPKIN_ADDRESS",
    "DefaultProviders",
    "EnvoyFileAccessLogProvider",
    "ExtensionProvider",
    "FileLogFormat",
    "OpenTelemetryProvider",
    "PrometheusProvider",
    "ProxyDefaults",
    "ProxyTracing",
    "ZipkinAddress",
    "ZipkinProvider",
]

#: The mesh's own collector (``defaultConfig.tracing.zipkin.address`` default).
DEFAULT_ZIPKIN_ADDRESS = "127.0.0.1:9411"
#: Provider names usable without an ``extensionProviders`` entry: ``envoy`` is the
#: proxy's stdout access log, ``prometheus`` Istio's standard metrics, ``zipkin``
#: the default tracer.
BUILTIN_PROVIDERS = frozenset({"envoy", "prometheus", "zipkin"})


class ZipkinProvider(ApiModel):
    service: str
    port: int = Field(ge=1, le=65535)
    path: str = "/api/v2/spans"
    max_tag_length: int = Field(default=256, ge=0)


class OpenTelemetryProvider(ApiModel):
    service: str
    port: int = Field(ge=1, le=65535)
    max_tag_length: int = Field(default=256, ge=0)


class FileLogFormat(ApiModel):
    """``text`` (an Envoy format string) or ``labels`` (JSON keys -> format strings)."""

    text: str | None = None
    labels: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> FileLogFormat:
        if self.text is not None and self.labels is not None:
            raise ValueError("set only one of text and labels")
        return self


class EnvoyFileAccessLogProvider(ApiModel):
    path: str = "/dev/stdout"
    log_format: FileLogFormat | None = None


class PrometheusProvider(ApiModel):
    pass


class ExtensionProvider(ApiModel):
    """One named provider; exactly one kind is set."""

    name: str = Field(min_length=1)
    zipkin: ZipkinProvider | None = None
    opentelemetry: OpenTelemetryProvider | None = None
    envoy_file_access_log: EnvoyFileAccessLogProvider | None = None
    prometheus: PrometheusProvider | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ExtensionProvider:
        kinds = [
            k
            for k in (self.zipkin, self.opentelemetry, self.envoy_file_access_log, self.prometheus)
            if k is not None
        ]
        if len(kinds) != 1:
            raise ValueError(
                "set exactly one of zipkin, opentelemetry, envoyFileAccessLog, prometheus"
            )
        return self


class DefaultProviders(ApiModel):
    metrics: list[str] = Field(default_factory=list)
    tracing: list[str] = Field(default_factory=list)
    access_logging: list[str] = Field(default_factory=list)


class ZipkinAddress(ApiModel):
    address: str = DEFAULT_ZIPKIN_ADDRESS


class ProxyTracing(ApiModel):
    """``defaultConfig.tracing``: Istio's default sampling is 1 %."""

    sampling: float = Field(default=1.0, ge=0.0, le=100.0)
    zipkin: ZipkinAddress = Field(default_factory=ZipkinAddress)
    max_path_tag_length: int | None = None


class ProxyDefaults(ApiModel):
    """``defaultConfig``: the tracing defaults and ``drainDuration`` (how long
    Envoy keeps old listeners and filter chains serving their open connections
    after a change, and on shutdown) are read; other ProxyConfig fields are
    kept as written and ignored (proxy defaults come from the agent)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="allow"
    )

    tracing: ProxyTracing = Field(default_factory=ProxyTracing)
    drain_duration: str | None = None

    @field_validator("drain_duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration_ms(value)  # raises ValueError with the reason
        return value

    @property
    def drain_seconds(self) -> float | None:
        """``drainDuration`` in seconds (None: the proxies' own default)."""
        if self.drain_duration is None:
            return None
        return parse_duration_ms(self.drain_duration) / 1000
