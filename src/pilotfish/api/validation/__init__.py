"""Semantic validation of loaded resources, one module per kind.

``validate(resource)`` runs the metadata checks shared by all kinds and then
the kind's own validator. Cross-resource checks live in ``references``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from pilotfish.api.core.workloads import WORKLOAD_KINDS
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.ingress.validation import VALIDATORS as _INGRESS_VALIDATORS
from pilotfish.api.resource import Resource
from pilotfish.api.smi.validation import VALIDATORS as _SMI_VALIDATORS
from pilotfish.api.validation import (
    authorization_policy,
    destination_rule,
    gateway,
    kubernetes_workload,
    metadata,
    peer_authentication,
    request_authentication,
    secret,
    service,
    service_entry,
    sidecar,
    telemetry,
    virtual_service,
    workload,
    workload_entry,
    workload_group,
)

__all__ = ["VALIDATORS", "validate"]

Validator = Callable[[Resource], list[Diagnostic]]

VALIDATORS: Mapping[str, Validator] = MappingProxyType(
    {
        "VirtualService": virtual_service.validate,
        "DestinationRule": destination_rule.validate,
        "Gateway": gateway.validate,
        "ServiceEntry": service_entry.validate,
        "WorkloadEntry": workload_entry.validate,
        "WorkloadGroup": workload_group.validate,
        "Sidecar": sidecar.validate,
        "Service": service.validate,
        "Workload": workload.validate,
        "PeerAuthentication": peer_authentication.validate,
        "AuthorizationPolicy": authorization_policy.validate,
        "RequestAuthentication": request_authentication.validate,
        "Secret": secret.validate,
        "Telemetry": telemetry.validate,
        "Namespace": kubernetes_workload.validate_named,
        "ServiceAccount": kubernetes_workload.validate_named,
        **dict.fromkeys(WORKLOAD_KINDS, kubernetes_workload.validate),
        **_INGRESS_VALIDATORS,
        **_SMI_VALIDATORS,
    }
)


def validate(resource: Resource) -> list[Diagnostic]:
    """All errors and warnings of one resource (empty when it is fine).

    Kinds without a validator only get the metadata checks.
    """
    found = metadata.validate(resource)
    kind_validator = VALIDATORS.get(resource.kind)
    if kind_validator is not None:
        found += kind_validator(resource)
    return found
