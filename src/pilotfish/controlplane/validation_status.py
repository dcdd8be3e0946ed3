"""``status.validationMessages``: analysis findings on each object, as Istio's
``PILOT_ENABLE_STATUS`` writes them.

Theory of operation: the config API asks for the messages of an object when it
serves it. ``ValidationMessages`` runs every analyzer
(``api.analysis.analyze_resources``) over the store's objects, analyzed
together, once per store revision and mesh config, and keeps the findings that
carry an Istio code, by object. Each message has Istio's fields
(``documentationUrl``, ``level`` in upper case, ``type: {code, name}``) plus
Pilotfish's ``message`` and ``field``. Computing lazily on the first read after
a change keeps writes as cheap as before; reads between changes share one
analysis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from pilotfish.api.analysis import analyze_resources
from pilotfish.api.analysis.messages import by_code, documentation_url
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.model.mesh_config import MeshConfig

__all__ = ["ValidationMessages"]

Message = dict[str, Any]


class ValidationMessages:
    def __init__(self, domain_suffix: str) -> None:
        self._suffix = domain_suffix
        self._at: tuple[int, int] | None = None  # (store revision, id of the mesh config)
        self._by_key: dict[ResourceKey, list[Message]] = {}

    def of(
        self,
        key: ResourceKey,
        revision: int,
        mesh: MeshConfig,
        resources: Callable[[], Sequence[Resource]],
    ) -> list[Message]:
        """The messages of ``key`` as of store ``revision`` (``resources`` lists the store)."""
        if self._at != (revision, id(mesh)):
            self._by_key = self._analyze(resources(), mesh)
            self._at = (revision, id(mesh))
        return self._by_key.get(key, [])

    def _analyze(
        self, resources: Sequence[Resource], mesh: MeshConfig
    ) -> dict[ResourceKey, list[Message]]:
        found: dict[ResourceKey, list[Message]] = defaultdict(list)
        keys = {r.key: r for r in resources}
        for d in analyze_resources(resources, self._suffix, mesh):
            message = by_code(d.code) if d.code else None
            if message is None:
                continue
            key = ResourceKey(d.kind, d.namespace, d.name)
            if key not in keys and not d.namespace:
                # Cluster-scoped findings are named without a namespace; find the object.
                key = next((k for k in keys if (k.kind, k.name) == (d.kind, d.name)), key)
            if key not in keys:
                continue
            found[key].append(
                {
                    "documentationUrl": documentation_url(d.code),
                    "level": message.level.value.upper(),
                    "type": {"code": d.code, "name": message.name},
                    "message": d.message,
                    "field": d.field,
                }
            )
        return dict(found)
