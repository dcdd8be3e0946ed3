"""Service Mesh Interface kinds (the ``*.smi-spec.io`` groups)."""

from __future__ import annotations

from typing import Final

from pilotfish.api.kind_info import KindInfo

__all__ = ["KIND_INFOS"]

#: The SMI kinds Pilotfish serves.
KIND_INFOS: Final[tuple[KindInfo, ...]] = ()
