"""Offline analysis: load files and directories, check them alone and together.

``analyze_paths`` never stops at the first problem: every file is loaded,
every diagnostic kept. Resources that loaded without errors are then checked
together: the same kind/namespace/name defined twice is an error; dangling
references (``validation.references``) are warnings, and so are the
Kubernetes-manifest checks of ``validation.workload_analysis`` (Services and
pods, subsets, port names, labels, service accounts, Gateway selectors), and
so are the findings of the converters (``translate.derive``: a Gateway API
route no listener accepts, a backend another namespace does not grant...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.loader import load_file
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.api.validation.references import check_references
from pilotfish.api.validation.telemetry_providers import check_telemetry_providers
from pilotfish.api.validation.workload_analysis import check_workloads
from pilotfish.model.mesh_config import MeshConfig
from pilotfish.translate.conversion import ConversionContext
from pilotfish.translate.derive import derive

__all__ = ["CONFIG_SUFFIXES", "analyze_paths", "collect_files"]

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def collect_files(paths: Sequence[str]) -> tuple[list[Path], list[Diagnostic]]:
    """Files named directly, plus ``*.yaml|*.yml|*.json`` found recursively in
    directories (sorted, hidden entries skipped). Missing paths are errors."""
    files: list[Path] = []
    problems: list[Diagnostic] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            files += sorted(
                child
                for child in p.rglob("*")
                if child.is_file()
                and child.suffix.lower() in CONFIG_SUFFIXES
                and not any(part.startswith(".") for part in child.relative_to(p).parts)
            )
        elif p.is_file():
            files.append(p)
        else:
            problems.append(
                Diagnostic(Severity.ERROR, "no such file or directory", SourceRef(given))
            )
    unique: dict[Path, None] = dict.fromkeys(files)
    return list(unique), problems


def analyze_paths(
    paths: Sequence[str], domain_suffix: str = "cluster.local", mesh: MeshConfig | None = None
) -> list[Diagnostic]:
    """Every error and warning for the configuration under ``paths``; with ``mesh``,
    Telemetry provider names are also checked against its extension providers."""
    files, diagnostics = collect_files(paths)
    resources: list[Resource] = []
    first_seen: dict[ResourceKey, Resource] = {}
    for file in files:
        result = load_file(file)
        diagnostics += result.diagnostics
        for resource in result.resources:
            earlier = first_seen.get(resource.key)
            if earlier is not None:
                diagnostics.append(_duplicate(resource, earlier))
                continue
            first_seen[resource.key] = resource
            resources.append(resource)
    diagnostics += check_references(resources, domain_suffix)
    diagnostics += check_workloads(resources, domain_suffix)
    # What the converters found (a route no listener allows, a backend in another
    # namespace without a ReferenceGrant...), at the user's line.
    diagnostics += derive(resources, ConversionContext(domain_suffix)).diagnostics
    if mesh is not None:
        diagnostics += check_telemetry_providers(resources, mesh)
    return diagnostics


def _duplicate(resource: Resource, earlier: Resource) -> Diagnostic:
    where = str(earlier.source) if earlier.source else "elsewhere"
    return Diagnostic(
        severity=Severity.ERROR,
        message=f"duplicate {resource.kind} {resource.namespace}/{resource.name} "
        f"(first defined at {where})",
        source=resource.source,
        kind=resource.kind,
        namespace=resource.namespace,
        name=resource.name,
        field="metadata.name",
    )
