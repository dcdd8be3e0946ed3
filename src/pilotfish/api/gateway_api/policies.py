"""ReferenceGrant and BackendTLSPolicy.

A ReferenceGrant, in the namespace of the referenced objects, lets objects of
the ``from`` kinds in the ``from`` namespaces refer to its namespace's objects
of the ``to`` kinds (optionally one name). A BackendTLSPolicy makes a gateway
or sidecar originate TLS to the Services it targets, checking the server's
certificate against CA certificates (ConfigMaps) or the system's roots, with
``hostname`` as SNI and expected name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pilotfish.api.base import ApiModel
from pilotfish.api.gateway_api.common import (
    LocalObjectReference,
    ObjectName,
    PreciseHostname,
    SectionName,
)

__all__ = [
    "BackendTLSPolicySpec",
    "BackendTLSPolicyValidation",
    "PolicyTargetReference",
    "ReferenceGrantFrom",
    "ReferenceGrantSpec",
    "ReferenceGrantTo",
    "SubjectAltName",
]


class ReferenceGrantFrom(ApiModel):
    group: str
    kind: str
    namespace: ObjectName


class ReferenceGrantTo(ApiModel):
    group: str
    kind: str
    name: ObjectName | None = None


class ReferenceGrantSpec(ApiModel):
    from_: list[ReferenceGrantFrom] = Field(alias="from", min_length=1, max_length=16)
    to: list[ReferenceGrantTo] = Field(min_length=1, max_length=16)


class PolicyTargetReference(ApiModel):
    group: str = ""
    kind: str = "Service"
    name: ObjectName
    section_name: SectionName | None = None


class SubjectAltName(ApiModel):
    type: Literal["Hostname", "URI"]
    hostname: str | None = None
    uri: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SubjectAltName:
        if self.type == "Hostname" and (self.hostname is None or self.uri is not None):
            raise ValueError("type Hostname needs hostname (and no uri)")
        if self.type == "URI" and (self.uri is None or self.hostname is not None):
            raise ValueError("type URI needs uri (and no hostname)")
        return self


class BackendTLSPolicyValidation(ApiModel):
    ca_certificate_refs: list[LocalObjectReference] = Field(default_factory=list, max_length=8)
    well_known_ca_certificates: Literal["System"] | None = Field(
        default=None, alias="wellKnownCACertificates"
    )
    hostname: PreciseHostname
    subject_alt_names: list[SubjectAltName] = Field(default_factory=list, max_length=5)

    @model_validator(mode="after")
    def _one_source(self) -> BackendTLSPolicyValidation:
        if bool(self.ca_certificate_refs) == (self.well_known_ca_certificates is not None):
            raise ValueError(
                "exactly one of caCertificateRefs or wellKnownCACertificates must be set"
            )
        return self


class BackendTLSPolicySpec(ApiModel):
    target_refs: list[PolicyTargetReference] = Field(min_length=1, max_length=16)
    validation: BackendTLSPolicyValidation
    options: dict[str, str] = Field(default_factory=dict)
