"""Kinds that are served by converting them to Istio's own kinds first.

Theory of operation: the Gateway API, Kubernetes Ingress and SMI describe the
same traffic rules Istio's kinds do, so (as Istio itself does) each is
converted into Istio Gateways, VirtualServices, DestinationRules and
AuthorizationPolicies before translation, and everything downstream (sidecar
and gateway translation, explain, xDS) serves them unchanged.

A converter is a pure function of all the resources. It returns

- ``resources``: the Istio objects it derived. Their keys never collide with
  users' (converters name them after their source with a reserved suffix), and
  each carries its source's ``SourceRef`` so a problem found later still points
  at the user's file;
- ``statuses``: the ``status`` stanza of each source object as the source
  kind's specification defines it (a Gateway API route's ``parents``
  conditions, an Ingress's ``loadBalancer``), served by the config API and
  shown by ``get``;
- ``diagnostics``: what ``analyze`` reports (a route no listener allows, a
  backend in another namespace without a ReferenceGrant), at the user's line.

The snapshot holds the derived objects next to the users' and the statuses
beside them; converters never import the snapshot (it imports them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.translate import gateway_api, ingress, smi
from pilotfish.translate.conversion import Conversion, ConversionContext, Converter

__all__ = ["CONVERTERS", "Conversion", "ConversionContext", "Converter", "derive"]


def _converters() -> tuple[Converter, ...]:
    """Every converter, in a fixed order. Converters register here (one line each)."""
    return (ingress.convert_ingresses, smi.convert_smi, gateway_api.convert_gateway_api)


#: The converters ``derive`` runs (a function, so tests may run one alone).
CONVERTERS: Callable[[], tuple[Converter, ...]] = _converters


def derive(resources: Iterable[Resource], context: ConversionContext) -> Conversion:
    """Run every converter over ``resources`` and merge what they produced."""
    given = tuple(resources)
    derived: list[Resource] = []
    statuses: dict[ResourceKey, Mapping[str, Any]] = {}
    diagnostics: list[Diagnostic] = []
    for convert in CONVERTERS():
        out = convert(given, context)
        derived.extend(out.resources)
        statuses.update(out.statuses)
        diagnostics.extend(out.diagnostics)
    return Conversion(tuple(derived), MappingProxyType(statuses), tuple(diagnostics))
