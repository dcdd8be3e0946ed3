"""The types converters use (``translate/derive.py`` runs them).

Apart from ``derive`` so that a converter can import them without importing
``derive``, which imports every converter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource, ResourceKey

__all__ = ["Conversion", "ConversionContext", "Converter"]


@dataclass(frozen=True, slots=True)
class ConversionContext:
    """What converters may know besides the resources."""

    domain_suffix: str = "cluster.local"
    #: The mesh's root namespace (where Istio looks for mesh-wide objects).
    root_namespace: str = "istio-system"


@dataclass(frozen=True, slots=True)
class Conversion:
    """What one or more converters produced."""

    resources: tuple[Resource, ...] = ()
    statuses: Mapping[ResourceKey, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    diagnostics: tuple[Diagnostic, ...] = ()


Converter = Callable[[tuple[Resource, ...], ConversionContext], Conversion]
