"""Workload-selector analyzers (Istio's ``analyzers/sidecar``, ``telemetry``, ``authz``,
``k8sgateway``).

Sidecars and Telemetries (same rules, their own codes):

- IST0101 ReferencedResourceNotFound: a selector that picks no pod of the
  object's namespace;
- IST0110 / IST0159 (Conflicting...WorkloadSelectors): two or more of them
  pick the same pod, and which one applies is undefined;
- IST0111 / IST0160 (Multiple...WithoutWorkloadSelectors): more than one
  without a selector in one namespace.

AuthorizationPolicies: IST0127 NoMatchingWorkloadsFound when the selector
picks no pod (of the policy's namespace, or of the mesh for a policy in the
root namespace), or a namespace-wide policy's namespace has no pod.

AuthorizationPolicy, RequestAuthentication and Telemetry: IST0166
IneffectiveSelector when a ``selector`` (not a ``targetRef``) picks the pods
of a Kubernetes Gateway (label ``gateway.networking.k8s.io/gateway-name``):
Istio wants a ``targetRef`` to the Gateway there.

Offline, the pods are those the configuration declares (``PodIndex``): the
checks that say a selector picks nothing run only when the configuration
declares some pod (of the namespace, for the namespace-local ones), so a set
of policy files alone is not flooded with findings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.sidecar import SidecarSpec
from pilotfish.api.resource import Resource
from pilotfish.api.security.authorization_policy import AuthorizationPolicySpec
from pilotfish.api.security.request_authentication import RequestAuthenticationSpec
from pilotfish.api.telemetry.telemetry import TelemetrySpec
from pilotfish.api.validation.pod_index import Pod, matches

__all__ = ["CODES", "check_selectors"]

CODES = ("IST0110", "IST0111", "IST0127", "IST0159", "IST0160", "IST0166")

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


class _Family(NamedTuple):
    kind: str  # plural word for messages
    selector_path: str
    conflicting: str
    unselective: str


_SIDECARS = _Family("Sidecars", "spec.workloadSelector.labels", "IST0110", "IST0111")
_TELEMETRIES = _Family("Telemetries", "spec.selector.matchLabels", "IST0159", "IST0160")


def check_selectors(ctx: AnalysisContext) -> list[Diagnostic]:
    sidecars = [
        (r, dict(s.workload_selector.labels) if s.workload_selector else None)
        for r, s in ctx.of(SidecarSpec)
    ]
    telemetries = [
        (r, dict(s.selector.match_labels) if s.selector else None)
        for r, s in ctx.of(TelemetrySpec)
        if not s.target_ref and not s.target_refs
    ]
    found = _exclusive(ctx, _SIDECARS, sidecars)
    found += _exclusive(ctx, _TELEMETRIES, telemetries)
    found += _authorization_workloads(ctx)
    found += _ineffective(ctx)
    return found


def _text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _pod_label(pod: Pod) -> str:
    return f"{pod.resource.kind} {pod.resource.name}" if pod.resource else "a gateway"


def _exclusive(
    ctx: AnalysisContext,
    family: _Family,
    objects: Sequence[tuple[Resource, dict[str, str] | None]],
) -> list[Diagnostic]:
    """Objects of which at most one may apply to a pod (Sidecar, Telemetry)."""
    found: list[Diagnostic] = []
    by_pod: dict[int, list[Resource]] = defaultdict(list)
    pods: dict[int, Pod] = {}
    unselective: dict[str, list[Resource]] = defaultdict(list)
    declared = {p.namespace for p in ctx.pods.declared}
    for r, selector in objects:
        if not selector:
            # Istio's Telemetry analyzer counts only a missing selector as "none";
            # an empty one selects nothing in particular either way.
            unselective[r.namespace].append(r)
            continue
        selected = [
            p
            for p in ctx.pods.declared
            if p.namespace == r.namespace and matches(selector, p.labels)
        ]
        for pod in selected:
            by_pod[id(pod)].append(r)
            pods[id(pod)] = pod
        if not selected and r.namespace in declared:
            found.append(
                report(
                    r,
                    family.selector_path,
                    "IST0101",
                    f"selector {_text(selector)} selects no pod of namespace {r.namespace}",
                )
            )
    for key, chosen in by_pod.items():
        if len(chosen) < 2:
            continue
        pod = pods[key]
        names = ", ".join(sorted(s.name for s in chosen))
        found += [
            report(
                s,
                family.selector_path,
                family.conflicting,
                f"{family.kind} {names} in namespace {pod.namespace} select the same pods "
                f"({_pod_label(pod)}): which one applies is undefined",
            )
            for s in chosen
        ]
    for namespace, chosen in sorted(unselective.items()):
        if len(chosen) < 2:
            continue
        names = ", ".join(sorted(s.name for s in chosen))
        found += [
            report(
                s,
                "metadata.name",
                family.unselective,
                f"{family.kind} {names} in namespace {namespace} have no workload selector: "
                "which one applies is undefined",
            )
            for s in chosen
        ]
    return found


def _authorization_workloads(ctx: AnalysisContext) -> list[Diagnostic]:
    declared = ctx.pods.declared
    if not declared:
        return []
    root = ctx.mesh.root_namespace if ctx.mesh is not None else "istio-system"
    found: list[Diagnostic] = []
    for r, spec in ctx.of(AuthorizationPolicySpec):
        if spec.target_ref or spec.target_refs:
            continue
        labels = spec.selector.match_labels if spec.selector is not None else None
        mesh_wide = r.namespace == root
        scope = [p for p in ctx.pods.pods if mesh_wide or p.namespace == r.namespace]
        if labels is None:
            if not mesh_wide and not scope:
                found.append(
                    report(
                        r,
                        "metadata.namespace" if r.metadata.namespace else "metadata",
                        "IST0127",
                        f"no pod in namespace {r.namespace}: the policy applies to nothing",
                    )
                )
            continue
        if not any(matches(labels, p.labels) for p in scope):
            where = "the mesh" if mesh_wide else f"namespace {r.namespace}"
            found.append(
                report(
                    r,
                    "spec.selector.matchLabels",
                    "IST0127",
                    f"no workload of {where} has labels {_text(labels)}: the policy applies "
                    "to nothing",
                )
            )
    return found


def _ineffective(ctx: AnalysisContext) -> list[Diagnostic]:
    gateway_pods = [p for p in ctx.pods.declared if GATEWAY_NAME_LABEL in p.labels]
    if not gateway_pods:
        return []
    found: list[Diagnostic] = []
    policies: list[Resource] = [
        r
        for r in ctx.resources
        if isinstance(r.spec, AuthorizationPolicySpec | RequestAuthenticationSpec | TelemetrySpec)
    ]
    for r in policies:
        spec = r.spec
        assert isinstance(spec, AuthorizationPolicySpec | RequestAuthenticationSpec | TelemetrySpec)
        if spec.target_ref or spec.target_refs or spec.selector is None:
            continue
        labels = spec.selector.match_labels
        for pod in gateway_pods:
            if pod.namespace == r.namespace and matches(labels, pod.labels):
                gateway = pod.labels[GATEWAY_NAME_LABEL]
                found.append(
                    report(
                        r,
                        "spec.selector",
                        "IST0166",
                        f"selector {_text(labels)} picks the pods of Kubernetes Gateway "
                        f"{gateway}: use targetRefs (kind Gateway, name {gateway}) instead",
                    )
                )
    return found
