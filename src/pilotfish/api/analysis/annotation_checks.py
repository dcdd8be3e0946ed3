"""Istio annotation analyzers (Istio's ``annotations/`` and ``maturity/``).

Every annotation in Istio's namespace (a key whose prefix ends in
``istio.io``, and ``kubernetes.io/ingress.class``, which Istio documents) is
looked up in Istio's registry (``annotation_registry``):

- IST0108 UnknownAnnotation: the registry does not have it (a typo, or an
  annotation of another Istio release);
- IST0135 DeprecatedAnnotation: the registry marks it deprecated (not for
  ``sidecar.istio.io/inject`` when the ``sidecar.istio.io/inject`` label,
  its replacement, is also set);
- IST0107 MisplacedAnnotation: it belongs on other kinds of resource;
- IST0125 InvalidAnnotation: its value is not one Istio accepts
  (``annotation_values``);
- IST0136 AlphaAnnotation: it belongs to an alpha-phase feature.

Where Istio looks only at Namespaces, Services, Pods and Deployments, this
looks at every kind Pilotfish accepts, and also at the pod template of each
workload kind (``spec.template.metadata.annotations``), whose annotations are
the pods'. Istio runs its alpha analyzer only on request, because its
injector writes alpha annotations on every pod it injects; Pilotfish has no
injector, so its annotations are the user's own, and IST0136 (Info) is
reported by default. Istio's exceptions are kept: annotations the control
plane writes itself (``sidecar.istio.io/status``, ``istio.io/rev``,
``gateway.istio.io/controller-version``) are never reported, and on a pod
without the ``istio-init`` init container (Istio CNI) the capture annotations
the injector sets are not called alpha.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pilotfish.api.analysis import annotation_registry as registry
from pilotfish.api.analysis.annotation_values import VALIDATORS
from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.core.workloads import PodSpec, pod_template
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.yamlnodes import join_key

__all__ = ["CODES", "check_annotations"]

CODES = ("IST0107", "IST0108", "IST0125", "IST0135", "IST0136")

#: Written by Istio's control plane itself, never the user's doing.
_ALWAYS_IGNORED = frozenset(
    {"sidecar.istio.io/status", "gateway.istio.io/controller-version", "istio.io/rev"}
)
#: Set by Istio's injector on every pod it injects without CNI.
_INJECTOR_DEFAULTS = frozenset(
    {
        "sidecar.istio.io/interceptionMode",
        "traffic.sidecar.istio.io/includeInboundPorts",
        "traffic.sidecar.istio.io/excludeInboundPorts",
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
    }
)
_REPLACEMENTS = {"sidecar.istio.io/inject": ' in favor of the "sidecar.istio.io/inject" label'}


@dataclass(frozen=True, slots=True)
class _Annotated:
    """One annotation table: the kind it is placed on and where it is written."""

    resource: Resource
    kind: str
    annotations: Mapping[str, str]
    labels: Mapping[str, str]
    path: str
    pod: PodSpec | None = None


def _tables(r: Resource) -> Iterator[_Annotated]:
    meta = r.metadata
    pod = r.spec if r.kind == "Pod" and isinstance(r.spec, PodSpec) else None
    yield _Annotated(r, r.kind, meta.annotations, meta.labels, "metadata.annotations", pod)
    template = pod_template(r) if r.kind != "Pod" else None
    if template is not None:
        path = "spec.template.metadata.annotations"
        yield _Annotated(r, "Pod", template.annotations, template.labels, path, template.spec)


def _is_istio(name: str) -> bool:
    if name == "kubernetes.io/ingress.class":
        return True
    prefix, slash, _ = name.partition("/")
    return bool(slash) and prefix.endswith("istio.io")


def _kinds_of(known: registry.Annotation) -> tuple[str, ...] | None:
    """The kinds ``known`` belongs on; None when it fits any."""
    if "Any" in known.resources:
        return None
    return tuple(k for t in known.resources for k in registry.ISTIO_RESOURCE_KINDS.get(t, (t,)))


def _uses_cni(pod: PodSpec | None) -> bool:
    return pod is not None and not any(c.name == "istio-init" for c in pod.init_containers)


def _check(table: _Annotated, name: str, value: str) -> Iterator[Diagnostic]:
    r, path = table.resource, join_key(table.path, name)
    known = registry.lookup(name)
    if known is None:
        yield report(r, path, "IST0108", f"unknown Istio annotation {name!r}")
        return
    if known.feature_status == "Alpha" and not (
        _uses_cni(table.pod) and name in _INJECTOR_DEFAULTS
    ):
        yield report(
            r, path, "IST0136", f"annotation {name!r} is part of an alpha-phase Istio feature"
        )
    if known.deprecated and not (name == "sidecar.istio.io/inject" and name in table.labels):
        extra = _REPLACEMENTS.get(name, "")
        yield report(r, path, "IST0135", f"annotation {name!r} is deprecated{extra}")
    kinds = _kinds_of(known)
    if kinds is not None and table.kind not in kinds:
        where = ", ".join(known.resources)
        on = "a pod template" if table.path.startswith("spec.") else f"a {table.kind}"
        yield report(r, path, "IST0107", f"annotation {name!r} belongs on {where}, not on {on}")
        return
    problem = VALIDATORS[name](value) if name in VALIDATORS else None
    if problem is not None:
        yield report(r, path, "IST0125", f"invalid value for annotation {name!r}: {problem}")


def check_annotations(ctx: AnalysisContext) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for r in ctx.resources:
        for table in _tables(r):
            for name, value in sorted(table.annotations.items()):
                if _is_istio(name) and name not in _ALWAYS_IGNORED:
                    found += _check(table, name, value)
    return found
