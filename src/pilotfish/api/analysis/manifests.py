"""Kubernetes-manifest analyzers (Istio's ``analyzers/injection``, ``deployment``,
``telemetry/providers.go``).

- IST0123 NamespaceMultipleInjectionLabels: a Namespace with more than one
  kind of injection label (``istio-injection``, ``istio.io/rev``,
  ``istio.io/dataplane-mode``; the last two count only when
  ``istio-injection`` is absent or ``enabled``, as in Istio). ``istio-system``
  is left alone.
- IST0144 InvalidApplicationUID: a Pod or Deployment running as UID 1337 (pod
  or container ``securityContext.runAsUser``), the sidecar's own UID, whose
  traffic the capture rules let through uncaptured. The ``istio-proxy``
  container itself is exempt.
- IST0116 DeploymentAssociatedToMultipleServices: Services of a Deployment's
  namespace that select its pods give one port different protocols.
- IST0137 DeploymentConflictingPorts: such Services send one targetPort from
  different ports.
- IST0157 InvalidTelemetryProvider: a Telemetry access-logging entry (not
  disabled) without providers, when the mesh config names no default
  access-logging provider: it is ignored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.analysis.scope import is_istio_control_plane
from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.core.workloads import pod_template
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.telemetry.telemetry import TelemetrySpec
from pilotfish.api.validation.pod_index import matches

__all__ = ["CODES", "check_manifests"]

CODES = ("IST0116", "IST0123", "IST0137", "IST0144", "IST0157")

PROXY_UID = 1337


def check_manifests(ctx: AnalysisContext) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for r in ctx.resources:
        if r.kind == "Namespace":
            found += _injection_labels(r)
        elif r.kind in ("Pod", "Deployment"):
            found += _proxy_uid(r)
            if r.kind == "Deployment":
                found += _services_of_deployment(ctx, r)
    found += _telemetry_providers(ctx)
    return found


def _injection_labels(r: Resource) -> list[Diagnostic]:
    if r.name == "istio-system":
        return []
    labels = r.metadata.labels
    legacy = labels.get("istio-injection")
    found = [f"istio-injection={legacy}"] if legacy is not None else []
    for key in ("istio.io/rev", "istio.io/dataplane-mode"):
        if key in labels and (legacy is None or legacy == "enabled"):
            found.append(f"{key}={labels[key]}")
    if len(found) < 2:
        return []
    return [
        report(
            r,
            "metadata.labels",
            "IST0123",
            f"namespace {r.name} has more than one kind of injection label "
            f"({', '.join(found)}): which one wins is undefined; keep one",
        )
    ]


def _run_as(extra: Mapping[str, Any] | None) -> object:
    context = (extra or {}).get("securityContext")
    return context.get("runAsUser") if isinstance(context, Mapping) else None


def _proxy_uid(r: Resource) -> list[Diagnostic]:
    view = pod_template(r)
    if view is None or is_istio_control_plane(r):
        return []
    paths: list[str] = []
    if _run_as(view.spec.model_extra) == PROXY_UID:
        paths.append(f"{view.path}.securityContext.runAsUser")
    for i, container in enumerate(view.spec.containers):
        if container.name != "istio-proxy" and _run_as(container.model_extra) == PROXY_UID:
            paths.append(f"{view.path}.containers[{i}].securityContext.runAsUser")
    return [
        report(
            r,
            path,
            "IST0144",
            f"runs as UID {PROXY_UID}, the sidecar's own: its traffic bypasses the sidecar "
            "(capture lets UID 1337 through)",
        )
        for path in paths
    ]


def _services_of_deployment(ctx: AnalysisContext, r: Resource) -> list[Diagnostic]:
    view = pod_template(r)
    if view is None:
        return []
    services = [
        (s, spec)
        for s, spec in ctx.of(ServiceSpec)
        if s.namespace == r.namespace and spec.selector and matches(spec.selector, view.labels)
    ]
    protocols: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    targets: dict[str, dict[int, str]] = defaultdict(dict)
    for s, spec in services:
        name = f"{s.namespace}/{s.name}"
        for port in spec.ports:
            protocols[port.port][port.protocol].add(name)
            target = port.target_port if port.target_port not in (None, 0, "") else port.port
            targets[str(target)][port.port] = name
    found: list[Diagnostic] = []
    for number, by_protocol in sorted(protocols.items()):
        if len(by_protocol) > 1:
            names = sorted(n for ns in by_protocol.values() for n in ns)
            found.append(
                report(
                    r,
                    "metadata.name",
                    "IST0116",
                    f"Services {', '.join(names)} select these pods and give port {number} "
                    f"different protocols ({', '.join(sorted(by_protocol))})",
                )
            )
    for target, by_port in sorted(targets.items()):
        if len(by_port) > 1:
            found.append(
                report(
                    r,
                    "metadata.name",
                    "IST0137",
                    f"Services {', '.join(sorted(set(by_port.values())))} select these pods and "
                    f"send targetPort {target} from different ports "
                    f"({', '.join(str(p) for p in sorted(by_port))})",
                )
            )
    return found


def _telemetry_providers(ctx: AnalysisContext) -> list[Diagnostic]:
    defaults = ctx.mesh.default_providers if ctx.mesh is not None else None
    if defaults is not None and defaults.access_logging:
        return []
    found: list[Diagnostic] = []
    for r, spec in ctx.of(TelemetrySpec):
        for i, entry in enumerate(spec.access_logging):
            if entry.disabled or entry.providers:
                continue
            found.append(
                report(
                    r,
                    f"spec.accessLogging[{i}]",
                    "IST0157",
                    "access logging without providers, and the mesh config names no default "
                    "access-logging provider: this entry is ignored",
                )
            )
    return found
