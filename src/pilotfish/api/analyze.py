"""Offline analysis: load files and directories, check them alone and together.

``analyze_paths`` never stops at the first problem: every file is loaded,
every diagnostic kept. Resources that loaded without errors are then checked
together (``api.analysis``): the same kind/namespace/name defined twice is an error; dangling
references (``validation.references``) are warnings, and so are the
Kubernetes-manifest checks of ``validation.workload_analysis`` (Services and
pods, subsets, port names, labels, service accounts, Gateway selectors), and
so are the findings of the converters (``translate.derive``: a Gateway API
route no listener accepts, a backend another namespace does not grant...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pilotfish.api.analysis import analyze_resources
from pilotfish.api.analysis.scope import CLUSTER_SCOPED_KINDS, unscoped
from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.loader import load_file
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.model.mesh_config import MeshConfig

__all__ = ["CONFIG_SUFFIXES", "analyze_loaded", "analyze_paths", "collect_files"]

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
    results = [load_file(file) for file in files]
    for result in results:
        diagnostics += result.diagnostics
    return diagnostics + analyze_loaded(
        [r for result in results for r in result.resources], domain_suffix, mesh
    )


def analyze_loaded(
    loaded: Sequence[Resource], domain_suffix: str = "cluster.local", mesh: MeshConfig | None = None
) -> list[Diagnostic]:
    """Duplicates among ``loaded`` (in order), then every analyzer over the first of each."""
    diagnostics: list[Diagnostic] = []
    resources: list[Resource] = []
    first_seen: dict[ResourceKey, Resource] = {}
    for resource in loaded:
        earlier = first_seen.get(resource.key)
        if earlier is not None:
            diagnostics.append(_duplicate(resource, earlier))
            continue
        first_seen[resource.key] = resource
        resources.append(resource)
    return unscoped(diagnostics) + analyze_resources(resources, domain_suffix, mesh)


def _duplicate(resource: Resource, earlier: Resource) -> Diagnostic:
    where = str(earlier.source) if earlier.source else "elsewhere"
    who = (
        resource.name
        if resource.kind in CLUSTER_SCOPED_KINDS
        else f"{resource.namespace}/{resource.name}"
    )
    return Diagnostic(
        severity=Severity.ERROR,
        message=f"duplicate {resource.kind} {who} (first defined at {where})",
        source=resource.source,
        kind=resource.kind,
        namespace=resource.namespace,
        name=resource.name,
        field="metadata.name",
    )
