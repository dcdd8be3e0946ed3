"""Markers shared by the Gateway API converter and route translation.

A VirtualService derived from a Gateway API route carries
``ROUTE_SEMANTICS: gateway`` (as Istio marks its own derived ones), which
switches route translation to the Gateway API's rules; ``PREFIX_MARK`` at the
start of a rewrite or redirect ``uri`` means "replace the matched prefix
only". Kept apart so that the converter need not import translation.
"""

from __future__ import annotations

from typing import Final

from pilotfish.api.resource import Resource

__all__ = ["PREFIX_MARK", "ROUTE_SEMANTICS", "SCOPE_NAMESPACE", "gateway_semantics"]

ROUTE_SEMANTICS: Final = "internal.pilotfish.io/route-semantics"
PREFIX_MARK: Final = "%PREFIX()%"
#: On a derived Istio Gateway: it selects workloads of this namespace only.
SCOPE_NAMESPACE: Final = "internal.pilotfish.io/scope-namespace"


def gateway_semantics(vs: Resource) -> bool:
    """Was ``vs`` derived from a Gateway API route?"""
    return vs.metadata.annotations.get(ROUTE_SEMANTICS) == "gateway"
