"""What every analyzer reads: the resources analyzed together, and indexes over them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from pilotfish.api.analysis.messages import by_code
from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.resource import Resource
from pilotfish.api.validation.pod_index import PodIndex
from pilotfish.model.mesh_config import MeshConfig

__all__ = ["AnalysisContext", "report"]

_S = TypeVar("_S", bound=BaseModel)


@dataclass
class AnalysisContext:
    resources: Sequence[Resource]
    domain_suffix: str = "cluster.local"
    mesh: MeshConfig | None = None
    #: What the converters derived from ``resources`` (Gateway API, Ingress, SMI):
    #: the objects the snapshot serves beside the users'.
    derived: Sequence[Resource] = ()
    pods: PodIndex = field(init=False)

    def __post_init__(self) -> None:
        self.pods = PodIndex(self.resources)

    def of(self, spec_type: type[_S]) -> list[tuple[Resource, _S]]:
        """Every resource whose spec is a ``spec_type``, with the spec typed."""
        return [(r, r.spec) for r in self.resources if isinstance(r.spec, spec_type)]

    def kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind]


def report(resource: Resource, path: str, code: str, message: str) -> Diagnostic:
    """A finding of Istio's message ``code`` on ``resource`` at the line of ``path``.

    Its severity is Pilotfish's: a cross-resource finding is at most a warning
    (configuration arrives in pieces; a file must not be refused for what
    another one lacks), Istio's Info stays info. ``analyze`` gives it Istio's
    level (``output.with_catalogue_levels``) for istioctl's thresholds, and so
    does ``pilotfish apply``, which refuses Error-level findings about the
    objects it writes (``controlplane.admission``).
    """
    known = by_code(code)
    if known is None:
        raise KeyError(f"{code} is not one of Istio's analysis messages")
    file = resource.source.file if resource.source else ""
    return Diagnostic(
        severity=Severity.INFO if known.level is Severity.INFO else Severity.WARNING,
        message=message,
        source=SourceRef(file, resource.line_of(path)) if file else None,
        kind=resource.kind,
        namespace=resource.namespace,
        name=resource.name,
        field=path,
        code=code,
    )
