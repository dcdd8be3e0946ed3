"""Kubernetes ``v1`` Namespace: its labels are what the mesh reads.

A Namespace is cluster-scoped; Pilotfish keys it by ``metadata.name`` and
ignores ``metadata.namespace``. Its ``metadata.labels`` (``istio-injection``,
``istio.io/rev``, ``topology.istio.io/network``...) are exposed to the rest of
Pilotfish through ``Snapshot.namespace_labels(name)``. The spec (finalizers)
has no meaning here and is accepted as written.
"""

from __future__ import annotations

from pydantic import ConfigDict

from pilotfish.api.base import ApiModel

__all__ = ["NamespaceSpec"]


class NamespaceSpec(ApiModel):
    """Nothing of a Namespace's spec matters to the mesh; every field is accepted."""

    model_config = ConfigDict(extra="allow")
