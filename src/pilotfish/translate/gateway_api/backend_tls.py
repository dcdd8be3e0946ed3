"""BackendTLSPolicy -> DestinationRule TLS origination (filled in below)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.translate.gateway_api.index import ConfigIndex

__all__ = ["convert_backend_tls"]


def convert_backend_tls(
    resources: tuple[Resource, ...], index: ConfigIndex
) -> tuple[list[Resource], dict[ResourceKey, Mapping[str, Any]], list[Diagnostic]]:
    return [], {}, []
