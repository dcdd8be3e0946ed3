"""Snapshots for "what if": configuration not applied yet, alone or over the live one.

``--config DIR`` loads a directory's YAML the way the control plane loads its
config paths (``api.loader``). Over a live mesh the DIR's resources replace
live ones of the same kind, namespace and name and add the others
(``overlay``); alone (no mesh running) they are the whole configuration
(``load_dir``), and the caller's proxy view is inferred from the DIR's
``WorkloadEntry`` or ``Workload`` of that name (``offline_view``).
JWKS of a RequestAuthentication that only the DIR names were never fetched, so
its tokens cannot be verified: the explanation says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot

__all__ = ["ConfigError", "load_texts", "offline_view", "overlay", "read_dir"]

_SUFFIXES = (".yaml", ".yml", ".json")


class ConfigError(ValueError):
    """The configuration does not load; ``diagnostics`` say where."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        first = diagnostics[0]
        where = f"{first.source.file}:{first.source.line}: " if first.source else ""
        more = f" (and {len(diagnostics) - 1} more)" if len(diagnostics) > 1 else ""
        super().__init__(f"{where}{first.message}{more}")


def read_dir(directory: Path) -> list[tuple[str, str]]:
    """(file name, text) of every YAML/JSON file under ``directory``, sorted."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    return [
        (str(p), p.read_text(encoding="utf-8"))
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.suffix in _SUFFIXES and not p.name.startswith(".")
    ]


def load_texts(files: Iterable[tuple[str, str]]) -> tuple[Resource, ...]:
    """Every resource of ``files``; ConfigError if any has an error."""
    resources: list[Resource] = []
    errors: list[Diagnostic] = []
    for name, text in files:
        result = load_text(text, name)
        resources += result.resources
        errors += [d for d in result.diagnostics if d.is_error]
    if errors:
        raise ConfigError(errors)
    return tuple(resources)


def overlay(live: Snapshot, extra: Sequence[Resource]) -> Snapshot:
    """``live`` with ``extra`` applied (same key: replaced; new: added)."""
    keys = {r.key for r in extra}
    merged = [r for r in live.resources if r.key not in keys] + list(extra)
    return build_snapshot(
        merged,
        live.revision,
        domain_suffix=live.domain_suffix,
        jwks=live.jwks,
        mesh=live.mesh,
    )


def offline_view(resources: Sequence[Resource], workload: str) -> ProxyView:
    """A sidecar view for ``name[.namespace]`` from its WorkloadEntry or Workload.

    The layout is explicit (``NONE`` interception, as agents run outside a pod
    network) without a mesh certificate; KeyError when nothing of that name exists.
    """
    name, _, namespace = workload.partition(".")
    namespace = namespace or "default"
    for res in resources:
        if res.kind not in ("WorkloadEntry", "Workload") or res.namespace != namespace:
            continue
        if res.metadata.name != name:
            continue
        if res.kind == "WorkloadEntry":
            labels = dict(getattr(res.spec, "labels", None) or {})
            sa = getattr(res.spec, "service_account", None) or "default"
            address = getattr(res.spec, "address", "") or "127.0.0.1"
        else:
            labels = dict(res.metadata.labels or {})
            sa = getattr(res.spec, "service_account", "default")
            address = "127.0.0.1"
        return ProxyView(
            "sidecar",
            namespace,
            labels=tuple(sorted(labels.items())),
            service_account=sa,
            bind_ip=address,
            app_address=address,
        )
    raise KeyError(f"no WorkloadEntry or Workload {namespace}/{name} in the configuration")
