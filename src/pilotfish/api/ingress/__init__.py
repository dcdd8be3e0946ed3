"""Kubernetes Ingress and IngressClass (``networking.k8s.io/v1``)."""

from __future__ import annotations

from typing import Final

from pilotfish.api.kind_info import KindInfo

__all__ = ["KIND_INFOS"]

#: The Ingress kinds Pilotfish serves.
KIND_INFOS: Final[tuple[KindInfo, ...]] = ()
