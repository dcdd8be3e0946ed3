"""Whether a batch of objects may be written: the analyzers' verdict on it.

Theory of operation: ``judge`` analyzes the configuration as it would be
after the write, i.e. the store's current objects with the applied ones
replacing or adding theirs, so objects applied together see each other (a
VirtualService and the DestinationRule defining its subsets). It runs every
analyzer ``pilotfish analyze`` runs (``api.analysis.analyze_resources``) and
gives coded findings Istio's level, as ``analyze`` reports them
(``output.with_catalogue_levels``). Only findings about the applied objects
count: a problem of an object already stored is not the applier's doing and
must not block an unrelated write. An Error-level finding refuses the batch;
warnings and info are reported and let it through. Schema errors never get
here: each object was loaded and validated first.

One kind of Error is reported and does not refuse: a finding about which
workloads run (IST0173, a DestinationRule subset that selects no pods). What
runs changes by itself, and the usual canary order is to define the subset
first and start the new version after, as Istio's Bookinfo does with
``destination-rule-all.yaml``; refusing it would refuse a correct file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pilotfish.api.analysis import analyze_resources
from pilotfish.api.analysis.output import WORKLOAD_DEPENDENT_CODES, with_catalogue_levels
from pilotfish.api.analysis.scope import CLUSTER_SCOPED_KINDS
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.model.mesh_config import MeshConfig

__all__ = ["NON_BLOCKING_CODES", "Verdict", "judge"]

#: Error-level codes reported by apply without refusing it: they depend on which
#: workloads run, not on the configuration being consistent.
NON_BLOCKING_CODES = WORKLOAD_DEPENDENT_CODES


@dataclass(frozen=True, slots=True)
class Verdict:
    """The findings about the applied objects, at Istio's levels, in analyzer order."""

    findings: tuple[Diagnostic, ...]

    @property
    def errors(self) -> list[Diagnostic]:
        """The Error-level findings that refuse the write."""
        return [d for d in self.findings if d.is_error and d.code not in NON_BLOCKING_CODES]

    @property
    def refused(self) -> bool:
        return bool(self.errors)


def judge(
    applied: Sequence[Resource],
    current: Iterable[Resource],
    domain_suffix: str = "cluster.local",
    mesh: MeshConfig | None = None,
) -> Verdict:
    """The verdict on writing ``applied`` over the store's ``current`` objects."""
    keys = {r.key for r in applied}
    after = [r for r in current if r.key not in keys] + list(applied)
    found = with_catalogue_levels(analyze_resources(after, domain_suffix, mesh))
    return Verdict(tuple(d for d in found if _about(d, keys)))


def _about(finding: Diagnostic, keys: set[ResourceKey]) -> bool:
    """Is ``finding`` about one of the objects ``keys`` names?"""
    if ResourceKey(finding.kind, finding.namespace, finding.name) in keys:
        return True
    # Cluster-scoped objects are reported without the namespace the loader gave them.
    return (
        finding.kind in CLUSTER_SCOPED_KINDS
        and not finding.namespace
        and any((k.kind, k.name) == (finding.kind, finding.name) for k in keys)
    )
