"""The mesh-wide configuration file (Istio's ``meshConfig``).

Theory of operation: one YAML (or JSON) document, read once at control-plane
start (``--mesh-config FILE``; not reloaded: a change needs a restart), with
Istio's field names. It is validated like every other configuration file:
unknown fields are errors, and each error names the file, the line and the
field. ``MeshConfig`` is the one home of these values: command-line flags
(``--trust-domain``, the runtime's access logs) are applied to it once, by
``with_overrides``; ``ControlPlaneSettings.mesh`` holds the result, and every
``Snapshot`` carries that same object (``Snapshot.mesh``), so a different mesh
config is a different config generation and nothing downstream reads the file.

Supported fields (everything else in Istio's ``MeshConfig`` is an error, so
that a typo is never silently ignored):

- ``rootNamespace`` (default ``istio-system``): where mesh-wide policies and
  the mesh-default Sidecar live;
- ``trustDomain`` (default ``cluster.local``);
- ``defaultHttpRetryPolicy`` {attempts, perTryTimeout, retryOn}: used by every
  HTTP route whose VirtualService sets no ``retries`` (Istio's default when
  unset: 2 attempts on connect-failure, refused-stream, unavailable, cancelled
  and 503);
- ``outboundTrafficPolicy.mode``: ``ALLOW_ANY`` (default) or ``REGISTRY_ONLY``;
- ``accessLogFile``: ``""`` (off) or ``/dev/stdout`` (every proxy logs each
  request to its output), ``accessLogEncoding`` (``TEXT`` or ``JSON``) and
  ``accessLogFormat`` (an Envoy format string; for JSON, a JSON object of
  format strings);
- ``extensionProviders`` and ``defaultProviders`` (model/mesh_telemetry.py):
  the named telemetry providers and those used when no Telemetry resource
  chooses;
- ``enableAutoMtls`` (default true);
- ``defaultConfig``: ``tracing.sampling`` (percentage, default 1) and
  ``tracing.zipkin.address`` (the built-in collector, ``127.0.0.1:9411``) are
  read; the other proxy defaults are accepted and ignored (they come from the
  agent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from pilotfish.api.base import ApiModel
from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.duration import parse_duration_ms
from pilotfish.api.networking.virtual_service import HTTPRetry
from pilotfish.api.pydantic_errors import errors_to_findings
from pilotfish.api.yamlcompose import ParseLimitError, compose_documents
from pilotfish.api.yamlnodes import line_in, node_to_data
from pilotfish.model.mesh_telemetry import (
    BUILTIN_PROVIDERS,
    DefaultProviders,
    ExtensionProvider,
    ProxyDefaults,
)

__all__ = [
    "ACCESS_LOG_STDOUT",
    "DEFAULT_MESH_CONFIG",
    "AccessLogEncoding",
    "MeshConfig",
    "MeshConfigError",
    "OutboundMode",
    "OutboundTrafficPolicy",
    "load_mesh_config",
    "parse_mesh_config",
    "with_overrides",
]

OutboundMode = Literal["ALLOW_ANY", "REGISTRY_ONLY"]
ACCESS_LOG_STDOUT = "/dev/stdout"
AccessLogEncoding = Literal["TEXT", "JSON"]


class OutboundTrafficPolicy(ApiModel):
    """What a sidecar does with traffic to a host outside the service registry."""

    mode: OutboundMode = "ALLOW_ANY"


class MeshConfig(ApiModel):
    """The mesh config file's schema (a subset of Istio's ``MeshConfig``)."""

    root_namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    default_http_retry_policy: HTTPRetry | None = None
    outbound_traffic_policy: OutboundTrafficPolicy = Field(default_factory=OutboundTrafficPolicy)
    access_log_file: str = ""
    access_log_encoding: AccessLogEncoding = "TEXT"
    access_log_format: str = ""
    enable_auto_mtls: bool = True
    # Istio's per-proxy defaults (ProxyConfig): tracing is read, the rest tolerated
    # so that real mesh configs load.
    default_config: ProxyDefaults | None = None
    extension_providers: list[ExtensionProvider] = Field(default_factory=list)
    default_providers: DefaultProviders | None = None

    @property
    def access_log(self) -> bool:
        return bool(self.access_log_file)

    @property
    def proxy_defaults(self) -> ProxyDefaults:
        return self.default_config if self.default_config is not None else ProxyDefaults()

    def provider(self, name: str) -> ExtensionProvider | None:
        """The extension provider called ``name`` (the last one wins, as in Istio)."""
        found = None
        for p in self.extension_providers:
            if p.name == name:
                found = p
        return found

    @property
    def outbound_mode(self) -> OutboundMode:
        return self.outbound_traffic_policy.mode

    def to_json(self) -> dict[str, Any]:
        """The effective configuration with Istio's field names (defaults included)."""
        out: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return out


#: Istio's defaults (no mesh config file).
DEFAULT_MESH_CONFIG = MeshConfig()


def with_overrides(
    mesh: MeshConfig,
    *,
    root_namespace: str | None = None,
    trust_domain: str | None = None,
    access_log: bool | None = None,
) -> MeshConfig:
    """``mesh`` with command-line overrides applied; None leaves the file's value.

    The one place where flags (``--trust-domain``, the runtime's access logs)
    meet the mesh config file: everything downstream reads only the result.
    """
    update: dict[str, Any] = {}
    if root_namespace is not None:
        update["root_namespace"] = root_namespace
    if trust_domain is not None:
        update["trust_domain"] = trust_domain
    if access_log is not None:
        update["access_log_file"] = ACCESS_LOG_STDOUT if access_log else ""
    return mesh.model_copy(update=update) if update else mesh


@dataclass(frozen=True, slots=True)
class MeshConfigError(Exception):
    """The mesh config file has errors; each diagnostic names file, line and field."""

    diagnostics: tuple[Diagnostic, ...]

    def __str__(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


def _diag(filename: str, line: int, field: str, message: str) -> Diagnostic:
    return Diagnostic(Severity.ERROR, message, SourceRef(filename, line), field=field)


def parse_mesh_config(text: str, filename: str = "<mesh config>") -> MeshConfig:
    """Parse and check a mesh config document. Raises ``MeshConfigError``.

    An empty document is the default configuration.
    """
    try:
        nodes = list(compose_documents(text))
    except ParseLimitError as exc:
        raise MeshConfigError((_diag(filename, exc.line, "", exc.message),)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise MeshConfigError((_diag(filename, line, "", f"invalid YAML: {exc}"),)) from exc
    docs = [n for n in nodes if n is not None]
    if len(docs) > 1:
        raise MeshConfigError(
            (_diag(filename, docs[1].start_mark.line + 1, "", "expected one document"),)
        )
    if not docs:
        return MeshConfig()
    data = node_to_data(docs[0])
    problems = [_diag(filename, line, path, msg) for path, line, msg in data.problems]
    if problems:
        raise MeshConfigError(tuple(problems))
    raw = data.value if data.value is not None else {}
    if not isinstance(raw, dict):
        raise MeshConfigError(
            (_diag(filename, docs[0].start_mark.line + 1, "", "must be a mapping"),)
        )
    try:
        config = MeshConfig.model_validate(raw)
    except ValidationError as exc:
        raise MeshConfigError(
            tuple(
                _diag(filename, line_in(data.lines, path, 1), path, message)
                for path, message in errors_to_findings(exc, raw, "")
            )
        ) from exc
    found = _semantic_problems(config, data.lines, filename)
    if found:
        raise MeshConfigError(tuple(found))
    return config


def _semantic_problems(
    config: MeshConfig, lines: dict[str, int], filename: str
) -> list[Diagnostic]:
    found: list[Diagnostic] = []

    def error(path: str, message: str) -> None:
        found.append(_diag(filename, line_in(lines, path, 1), path, message))

    if not config.root_namespace:
        error("rootNamespace", "must not be empty")
    if not config.trust_domain:
        error("trustDomain", "must not be empty")
    if config.access_log_file not in ("", ACCESS_LOG_STDOUT):
        error("accessLogFile", f"must be '' (off) or '{ACCESS_LOG_STDOUT}'")
    if config.access_log_encoding == "JSON" and config.access_log_format:
        try:
            parsed = json.loads(config.access_log_format)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            error(
                "accessLogFormat",
                "with accessLogEncoding JSON, must be a JSON object of format strings",
            )
    seen: set[str] = set()
    for i, p in enumerate(config.extension_providers):
        if p.name in seen:
            error(f"extensionProviders[{i}].name", f"duplicate provider name {p.name!r}")
        seen.add(p.name)
    if config.default_providers is not None:
        for section in ("metrics", "tracing", "accessLogging"):
            names = getattr(config.default_providers, _snake(section))
            for i, name in enumerate(names):
                if name not in seen and name not in BUILTIN_PROVIDERS:
                    error(
                        f"defaultProviders.{section}[{i}]",
                        f"unknown provider {name!r} (not in extensionProviders)",
                    )
    retry = config.default_http_retry_policy
    if retry is not None:
        if retry.attempts is not None and retry.attempts < 0:
            error("defaultHttpRetryPolicy.attempts", "must not be negative")
        if retry.per_try_timeout:
            try:
                if parse_duration_ms(retry.per_try_timeout) <= 0:
                    error("defaultHttpRetryPolicy.perTryTimeout", "must be positive")
            except ValueError as exc:
                error("defaultHttpRetryPolicy.perTryTimeout", str(exc))
    return found


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def load_mesh_config(path: str | Path) -> MeshConfig:
    """Read and parse a mesh config file. Raises ``MeshConfigError`` (also when unreadable)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MeshConfigError((_diag(name, 0, "", f"cannot read file: {exc}"),)) from exc
    return parse_mesh_config(text, name)
