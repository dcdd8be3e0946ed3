"""Checks shared by the security kinds: ``selector`` versus ``targetRef(s)``."""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish.api.resource import Resource
from pilotfish.api.security.common import PolicyTargetReference, TypeWorkloadSelector
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["check_policy_target"]

# Istio attaches policies to a Service (waypoints) or a Gateway; Pilotfish does the same.
_TARGET_KINDS = {"Service": "", "Gateway": "gateway.networking.k8s.io"}


def check_policy_target(
    f: Findings,
    resource: Resource,
    selector: TypeWorkloadSelector | None,
    target_ref: PolicyTargetReference | None,
    target_refs: Sequence[PolicyTargetReference],
) -> None:
    """At most one of ``selector``, ``targetRef``, ``targetRefs``; valid labels; each
    target names a Service or Gateway of the policy's own namespace."""
    if selector is not None:
        for p, msg in checks.label_problems(selector.match_labels, "spec.selector.matchLabels"):
            f.error(p, msg)
    given = [
        name
        for name, present in (
            ("selector", selector is not None),
            ("targetRef", target_ref is not None),
            ("targetRefs", bool(target_refs)),
        )
        if present
    ]
    if len(given) > 1:
        f.error(f"spec.{given[1]}", f"only one of {', '.join(given)} may be set")
    refs = [("spec.targetRef", target_ref)] if target_ref is not None else []
    refs += [(f"spec.targetRefs[{i}]", ref) for i, ref in enumerate(target_refs)]
    for path, ref in refs:
        if ref.kind not in _TARGET_KINDS:
            f.error(f"{path}.kind", f"targetRef kind must be Service or Gateway, not {ref.kind!r}")
        elif ref.group not in ("", _TARGET_KINDS[ref.kind]):
            f.error(f"{path}.group", f"group {ref.group!r} is not valid for kind {ref.kind}")
        if not ref.name:
            f.error(f"{path}.name", "name must not be empty")
        if ref.namespace and ref.namespace != resource.namespace:
            f.error(
                f"{path}.namespace",
                f"a policy can only target resources in its own namespace "
                f"({resource.namespace!r}), not {ref.namespace!r}",
            )
