"""``analyze``'s analyzers and istioctl's catalogue, levels, filters and output.

``analyze_resources`` runs every analyzer over resources that loaded without
errors, analyzed together: Pilotfish's reference and Kubernetes-manifest
checks (``validation.references``, ``validation.workload_analysis``), the
converters' findings (``translate.derive``) and the analyzer families of this
package (one module each, each listing the Istio ``CODES`` it raises).
Objects of Istio's ignored system namespaces are dropped first
(``scope.analyzed``), and cluster-scoped objects are named without a
namespace. Severities stay Pilotfish's (cross-resource findings are warnings:
a file is never invalid for what another one lacks); ``analyze`` and the
admission of ``pilotfish apply`` (``controlplane.admission``) give coded
findings Istio's level (``output.with_catalogue_levels``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pilotfish.api.analysis import (
    annotation_checks,
    conditions,
    deprecation,
    destination_rules,
    destinations,
    gateway_credentials,
    gateways,
    internal_gateways,
    jwt_routing,
    manifests,
    selectors,
    service_entries,
    virtual_services,
)
from pilotfish.api.analysis.context import AnalysisContext
from pilotfish.api.analysis.scope import analyzed, unscoped
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.validation.references import check_references
from pilotfish.api.validation.telemetry_providers import check_telemetry_providers
from pilotfish.api.validation.workload_analysis import check_workloads
from pilotfish.model.mesh_config import MeshConfig
from pilotfish.translate.conversion import Conversion, ConversionContext
from pilotfish.translate.derive import derive

__all__ = ["ANALYZER_CODES", "analyze_resources", "reference_findings"]

Analyzer = Callable[[AnalysisContext], list[Diagnostic]]

_ANALYZERS: tuple[tuple[Analyzer, tuple[str, ...]], ...] = (
    (gateways.check_gateways, gateways.CODES),
    (service_entries.check_service_entries, service_entries.CODES),
    (selectors.check_selectors, selectors.CODES),
    (destination_rules.check_destination_rules, destination_rules.CODES),
    (virtual_services.check_virtual_services, virtual_services.CODES),
    (manifests.check_manifests, manifests.CODES),
    (destinations.check_destinations, destinations.CODES),
    (jwt_routing.check_jwt_routing, jwt_routing.CODES),
    (annotation_checks.check_annotations, annotation_checks.CODES),
    (deprecation.check_deprecated_fields, deprecation.CODES),
    (gateway_credentials.check_gateway_credentials, gateway_credentials.CODES),
    (internal_gateways.check_internal_gateways, internal_gateways.CODES),
    (conditions.check_conditions, conditions.CODES),
)

#: Codes raised by the checks outside this package (references, manifests).
_VALIDATION_CODES = ("IST0101", "IST0102", "IST0118", "IST0150", "IST0173", "IST0174")

#: Every Istio code some analyzer of Pilotfish raises.
ANALYZER_CODES = frozenset(code for _, codes in _ANALYZERS for code in codes) | frozenset(
    _VALIDATION_CODES
)


def analyze_resources(
    resources: Sequence[Resource],
    domain_suffix: str = "cluster.local",
    mesh: MeshConfig | None = None,
) -> list[Diagnostic]:
    """Every finding over ``resources`` (which loaded without errors), analyzed together."""
    kept = analyzed(resources)
    root = mesh.root_namespace if mesh is not None else "istio-system"
    conversion = derive(kept, ConversionContext(domain_suffix, root))
    found = check_references(kept, domain_suffix, _gateways_of(conversion))
    found += check_workloads(kept, domain_suffix)
    # What the converters found (a route no listener allows, a backend in another
    # namespace without a ReferenceGrant...), at the user's line.
    found += conversion.diagnostics
    if mesh is not None:
        found += check_telemetry_providers(kept, mesh)
    ctx = AnalysisContext(kept, domain_suffix, mesh, conversion.resources)
    for analyzer, _ in _ANALYZERS:
        found += analyzer(ctx)
    return unscoped(found)


def reference_findings(
    resources: Sequence[Resource],
    domain_suffix: str = "cluster.local",
    root_namespace: str = "istio-system",
) -> list[Diagnostic]:
    """The reference checks alone (``check_references``), with the Gateways the
    converters derive from ``resources`` (Ingress, Gateway API) counted as
    existing, exactly as ``analyze_resources`` runs them."""
    conversion = derive(resources, ConversionContext(domain_suffix, root_namespace))
    return check_references(resources, domain_suffix, _gateways_of(conversion))


def _gateways_of(conversion: Conversion) -> list[tuple[str, str]]:
    """(namespace, name) of every Gateway the converters made."""
    return [(g.namespace, g.name) for g in conversion.resources if g.kind == "Gateway"]
