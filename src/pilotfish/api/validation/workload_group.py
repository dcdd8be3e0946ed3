"""Semantic checks of a WorkloadGroup (its template is a WorkloadEntry without an address)."""

from __future__ import annotations

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.workload_group import WorkloadGroupSpec
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["validate"]


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, WorkloadGroupSpec)
    f = Findings(resource)
    template = spec.template
    if template.address:
        # As Istio: each member's address is its own host's.
        f.error("spec.template.address", "address must be empty: each member has its own")
    for name, port in template.ports.items():
        path = f"spec.template.ports.{name}"
        f.add(path, checks.check_dns1123_label(name, "port name"))
        f.add(path, checks.check_port(port))
    for p, msg in checks.label_problems(template.labels, "spec.template.labels"):
        f.error(p, msg)
    for p, msg in checks.label_problems(spec.metadata.labels, "spec.metadata.labels"):
        f.error(p, msg)
    if template.weight is not None and template.weight < 0:
        f.error("spec.template.weight", "weight must not be negative")
    if template.service_account:
        f.add(
            "spec.template.serviceAccount",
            checks.check_dns1123_subdomain(template.service_account, "service account"),
        )
    if spec.probe is not None:
        f.warning(
            "spec.probe",
            "is not run by Pilotfish: a joined workload is ready while its proxy is connected",
        )
    return f.items
