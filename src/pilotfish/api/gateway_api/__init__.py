"""Kubernetes Gateway API kinds (``gateway.networking.k8s.io``)."""

from __future__ import annotations

from typing import Final

from pilotfish.api.kind_info import KindInfo

__all__ = ["KIND_INFOS"]

#: The Gateway API kinds Pilotfish serves.
KIND_INFOS: Final[tuple[KindInfo, ...]] = ()
