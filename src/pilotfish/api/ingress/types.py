"""Schemas of Kubernetes ``networking.k8s.io/v1`` Ingress and IngressClass.

Field names are Kubernetes' own. ``pathType`` is a plain string so that a
wrong value gets Pilotfish's message (with the accepted values) at its line
rather than a schema error.
"""

from __future__ import annotations

from pydantic import Field

from pilotfish.api.base import ApiModel

__all__ = [
    "HTTPIngressPath",
    "HTTPIngressRuleValue",
    "IngressBackend",
    "IngressClassParameters",
    "IngressClassSpec",
    "IngressRule",
    "IngressServiceBackend",
    "IngressSpec",
    "IngressTLS",
    "ServiceBackendPort",
    "TypedLocalObjectReference",
]


class ServiceBackendPort(ApiModel):
    """A Service port, by number or by name (exactly one)."""

    name: str | None = None
    number: int | None = None


class IngressServiceBackend(ApiModel):
    name: str
    port: ServiceBackendPort


class TypedLocalObjectReference(ApiModel):
    api_group: str | None = None
    kind: str
    name: str


class IngressBackend(ApiModel):
    """Either a Service or another object (``resource``), exactly one."""

    service: IngressServiceBackend | None = None
    resource: TypedLocalObjectReference | None = None


class HTTPIngressPath(ApiModel):
    path: str | None = None
    path_type: str | None = None
    backend: IngressBackend


class HTTPIngressRuleValue(ApiModel):
    paths: list[HTTPIngressPath] = Field(default_factory=list)


class IngressRule(ApiModel):
    host: str | None = None
    http: HTTPIngressRuleValue | None = None


class IngressTLS(ApiModel):
    hosts: list[str] = Field(default_factory=list)
    secret_name: str | None = None


class IngressSpec(ApiModel):
    ingress_class_name: str | None = None
    default_backend: IngressBackend | None = None
    tls: list[IngressTLS] = Field(default_factory=list)
    rules: list[IngressRule] = Field(default_factory=list)


class IngressClassParameters(ApiModel):
    api_group: str | None = None
    kind: str
    name: str
    namespace: str | None = None
    scope: str | None = None


class IngressClassSpec(ApiModel):
    controller: str | None = None
    parameters: IngressClassParameters | None = None
