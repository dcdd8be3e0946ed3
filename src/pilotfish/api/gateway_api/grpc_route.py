"""GRPCRoute (``gateway.networking.k8s.io`` v1): routes gRPC calls by service and method.

A method match needs a service or a method (or both); an Exact service is a
dotted name (``foo.bar.Baz``) and an Exact method a bare identifier, as the
CRD's CEL rules say. The filters are HTTPRoute's minus redirect and rewrite.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from pilotfish.api.base import ApiModel
from pilotfish.api.gateway_api.common import (
    BackendObjectReference,
    HeaderName,
    Hostname,
    LocalObjectReference,
    ParentReference,
    SectionName,
    Weight,
)
from pilotfish.api.gateway_api.http_route import (
    HTTPHeaderFilter,
    HTTPRequestMirrorFilter,
    check_filter_fields,
    check_filters,
)

__all__ = [
    "GRPCBackendRef",
    "GRPCHeaderMatch",
    "GRPCMethodMatch",
    "GRPCRouteFilter",
    "GRPCRouteMatch",
    "GRPCRouteRule",
    "GRPCRouteSpec",
]

_SERVICE_RE: Final = re.compile(r"(?i)^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$")
_METHOD_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")


class GRPCMethodMatch(ApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: str | None = Field(default=None, max_length=1024)
    method: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _check(self) -> GRPCMethodMatch:
        if self.service is None and self.method is None:
            raise ValueError("one or both of service and method must be set")
        if self.type == "Exact":
            if self.service is not None and not _SERVICE_RE.match(self.service):
                raise ValueError(f"service {self.service!r} is not a valid gRPC service name")
            if self.method is not None and not _METHOD_RE.match(self.method):
                raise ValueError(f"method {self.method!r} is not a valid gRPC method name")
        return self


class GRPCHeaderMatch(ApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: str = Field(min_length=1, max_length=4096)


class GRPCRouteMatch(ApiModel):
    method: GRPCMethodMatch | None = None
    headers: list[GRPCHeaderMatch] = Field(default_factory=list, max_length=16)


_FIELDS = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
    "ExtensionRef": "extension_ref",
}


class GRPCRouteFilter(ApiModel):
    type: Literal[
        "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"
    ]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: LocalObjectReference | None = None

    @model_validator(mode="after")
    def _matching_field(self) -> GRPCRouteFilter:
        check_filter_fields(self, _FIELDS)
        return self


class GRPCBackendRef(BackendObjectReference):
    weight: Weight = 1
    filters: list[GRPCRouteFilter] = Field(default_factory=list, max_length=16)

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: list[GRPCRouteFilter]) -> list[GRPCRouteFilter]:
        check_filters(value)  # type: ignore[arg-type]
        return value


class GRPCRouteRule(ApiModel):
    name: SectionName | None = None
    matches: list[GRPCRouteMatch] = Field(default_factory=list, max_length=64)
    filters: list[GRPCRouteFilter] = Field(default_factory=list, max_length=16)
    backend_refs: list[GRPCBackendRef] = Field(default_factory=list, max_length=16)
    session_persistence: dict[str, object] | None = None

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: list[GRPCRouteFilter]) -> list[GRPCRouteFilter]:
        check_filters(value)  # type: ignore[arg-type]
        return value


class GRPCRouteSpec(ApiModel):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: list[GRPCRouteRule] = Field(default_factory=list, max_length=16)
