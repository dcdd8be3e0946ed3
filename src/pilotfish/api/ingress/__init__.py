"""Kubernetes Ingress and IngressClass (``networking.k8s.io/v1``)."""

from __future__ import annotations

from typing import Final

from pilotfish.api.ingress.types import IngressClassSpec, IngressSpec
from pilotfish.api.kind_info import KindInfo

__all__ = ["API_VERSION", "KIND_INFOS"]

API_VERSION: Final = "networking.k8s.io/v1"
_VERSIONS: Final = frozenset({API_VERSION})

#: The Ingress kinds Pilotfish serves.
KIND_INFOS: Final[tuple[KindInfo, ...]] = (
    KindInfo("Ingress", IngressSpec, _VERSIONS, "ingresses", short_names=("ing",)),
    KindInfo("IngressClass", IngressClassSpec, _VERSIONS, "ingressclasses"),
)
