"""Semantic checks of a PeerAuthentication, following Istio's validation rules."""

from __future__ import annotations

from collections.abc import Mapping

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.security.peer_authentication import PeerAuthenticationSpec
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["validate"]


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, PeerAuthenticationSpec)
    f = Findings(resource)
    if spec.selector is not None:
        for p, msg in checks.label_problems(
            spec.selector.match_labels, "spec.selector.matchLabels"
        ):
            f.error(p, msg)
    raw_spec = resource.raw.get("spec")
    written = isinstance(raw_spec, Mapping) and "portLevelMtls" in raw_spec
    if written and not spec.port_level_mtls:
        f.error("spec.portLevelMtls", "portLevelMtls, if set, must have at least one port")
    if spec.port_level_mtls and (spec.selector is None or not spec.selector.match_labels):
        # Ports are workload ports: without a selector there is no workload to number them.
        f.error(
            "spec.portLevelMtls",
            "portLevelMtls requires a selector (mesh- and namespace-wide policies "
            "cannot set port-level mTLS)",
        )
    for port in spec.port_level_mtls:
        f.add(f"spec.portLevelMtls.{port}", checks.check_port(port))
    return f.items
