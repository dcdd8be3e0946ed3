"""Kubernetes ``discovery.k8s.io/v1`` EndpointSlice: hand-made endpoints of a Service.

A Service without a selector gets its endpoints from the EndpointSlices
labelled ``kubernetes.io/service-name: <service>`` in its namespace, as in
Kubernetes and Istio (the registry reads them, ``registry/build.py``). Like a
Secret, an EndpointSlice has no ``spec``: ``addressType``, ``endpoints`` and
``ports`` sit at the top level of the document (``TOP_LEVEL_FIELDS``).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field

from pilotfish.api.base import ApiModel

__all__ = [
    "API_VERSION",
    "SERVICE_NAME_LABEL",
    "TOP_LEVEL_FIELDS",
    "Endpoint",
    "EndpointPort",
    "EndpointSliceSpec",
]

API_VERSION: Final = "discovery.k8s.io/v1"
#: The label naming the Service a slice belongs to.
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
#: The document's top-level keys that form an EndpointSlice's "spec" (YAML spelling).
TOP_LEVEL_FIELDS: Final = frozenset({"addressType", "endpoints", "ports"})


class EndpointConditions(ApiModel):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class ObjectReference(ApiModel):
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    api_version: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class Endpoint(ApiModel):
    addresses: list[str] = Field(min_length=1)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None
    zone: str | None = None
    hints: dict[str, Any] | None = None
    deprecated_topology: dict[str, str] | None = None

    @property
    def usable(self) -> bool:
        """Kubernetes' rule: an endpoint whose ``ready`` is unset counts as ready."""
        return self.conditions.ready is not False


class EndpointPort(ApiModel):
    name: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    app_protocol: str | None = None


class EndpointSliceSpec(ApiModel):
    address_type: Literal["IPv4", "IPv6", "FQDN"]
    # ``endpoints: null`` is how an empty slice reads back from Kubernetes.
    endpoints: list[Endpoint] | None = None
    ports: list[EndpointPort] | None = None
