"""The configuration store of a local mesh: files, or etcd with the manifests applied to it.

With files, the control plane watches ``config/`` (where ``pilotfish apply``
writes) and the manifests given to ``up``. With etcd (``--config-store`` or
the etcd addon) the store is shared and outlives the run, so the manifests
are *applied* to it at start, as one transaction, as ``pilotfish apply``
would: an object already stored with the same content is left alone, one
applied later through the API wins until the next ``up``.
"""

from __future__ import annotations

from pilotfish.api.resource import Resource
from pilotfish.controlplane.config_store import build_store
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store import FileStore, Store, StoreError

__all__ = ["apply_manifests", "manifest_objects", "primary_store"]


def primary_store(settings: ControlPlaneSettings) -> Store:
    """The store users write to (files or etcd), before the registrations overlay."""
    return build_store(settings)


def manifest_objects(manifests: tuple[str, ...]) -> list[Resource]:
    """Every object of the manifests (files or directories). StoreError listing every
    problem when any file has an error: then nothing is applied."""
    if not manifests:
        return []
    # Read them as the file store would serve them: same walk, same duplicate rules.
    files = FileStore(manifests)
    files.rescan()
    problems = [d for d in files.diagnostics() if d.is_error]
    resources = files.list()
    if problems:
        raise StoreError(f"the manifests have {len(problems)} error(s)", problems)
    return resources


def apply_manifests(store: Store, manifests: tuple[str, ...]) -> int:
    """Apply the manifests' objects to ``store`` as one change; returns how many there are."""
    resources = manifest_objects(manifests)
    if resources:
        store.apply_all(resources)
    return len(resources)
