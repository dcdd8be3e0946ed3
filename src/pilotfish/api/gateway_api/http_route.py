"""HTTPRoute (``gateway.networking.k8s.io`` v1, v1beta1).

The CRD's validation is kept: path values (absolute, no ``//``, ``/./``,
``/../``, ``%2f`` or ``#``), header names, methods, filter types with exactly
their own field, at most one of each header modifier, redirect or rewrite,
not both a redirect and a rewrite, ReplacePrefixMatch only with a PathPrefix
match, redirect status codes 301/302/303/307/308, mirror percent 0..100 or a
fraction, and ``backendRequest`` no longer than ``request``.
Defaults are the CRD's: a rule without matches matches every path (PathPrefix
``/``), a path match without type is a PathPrefix, a header or query match
without type is Exact, a backendRef's weight is 1.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pilotfish.api.base import ApiModel
from pilotfish.api.gateway_api.common import (
    BackendObjectReference,
    GatewayDuration,
    HeaderName,
    Hostname,
    LocalObjectReference,
    ParentReference,
    PortNumber,
    PreciseHostname,
    SectionName,
    Weight,
    gateway_duration_ms,
)

__all__ = [
    "HTTPBackendRef",
    "HTTPCORSFilter",
    "HTTPHeader",
    "HTTPHeaderFilter",
    "HTTPHeaderMatch",
    "HTTPPathMatch",
    "HTTPPathModifier",
    "HTTPQueryParamMatch",
    "HTTPRequestMirrorFilter",
    "HTTPRequestRedirectFilter",
    "HTTPRouteFilter",
    "HTTPRouteMatch",
    "HTTPRouteRetry",
    "HTTPRouteRule",
    "HTTPRouteSpec",
    "HTTPRouteTimeouts",
    "HTTPURLRewriteFilter",
    "MirrorFraction",
    "check_filters",
]

Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
_BAD_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F", "#")


def _check_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"path {value!r} must be an absolute path (start with '/')")
    for part in _BAD_PATH_PARTS:
        if part in value:
            raise ValueError(f"path {value!r} must not contain {part!r}")
    if value.endswith("/..") or value.endswith("/."):
        raise ValueError(f"path {value!r} must not end with '/..' or '/.'")
    return value


class HTTPPathMatch(ApiModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = Field(default="/", max_length=1024)

    @model_validator(mode="after")
    def _value(self) -> HTTPPathMatch:
        if self.type != "RegularExpression":
            _check_path(self.value)
        return self


class HTTPHeaderMatch(ApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: str = Field(max_length=4096)


class HTTPQueryParamMatch(ApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: str = Field(min_length=1, max_length=1024)


def _unique_names(items: list[HTTPHeaderMatch] | list[HTTPQueryParamMatch], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        key = item.name.lower() if what == "headers" else item.name
        if key in seen:
            raise ValueError(f"{what}: {item.name!r} is matched more than once")
        seen.add(key)


class HTTPRouteMatch(ApiModel):
    path: HTTPPathMatch = Field(default_factory=HTTPPathMatch)
    headers: list[HTTPHeaderMatch] = Field(default_factory=list, max_length=16)
    query_params: list[HTTPQueryParamMatch] = Field(default_factory=list, max_length=16)
    method: Method | None = None

    @model_validator(mode="after")
    def _unique(self) -> HTTPRouteMatch:
        _unique_names(self.headers, "headers")
        _unique_names(self.query_params, "queryParams")
        return self


class HTTPHeader(ApiModel):
    name: HeaderName
    value: str = Field(max_length=4096)


class HTTPHeaderFilter(ApiModel):
    set: list[HTTPHeader] = Field(default_factory=list, max_length=16)
    add: list[HTTPHeader] = Field(default_factory=list, max_length=16)
    remove: list[HeaderName] = Field(default_factory=list, max_length=16)


class HTTPPathModifier(ApiModel):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = Field(default=None, max_length=1024)
    replace_prefix_match: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _one(self) -> HTTPPathModifier:
        full = self.type == "ReplaceFullPath"
        wanted, other = ("replaceFullPath", "replacePrefixMatch")[:: 1 if full else -1]
        value, unwanted = (self.replace_full_path, self.replace_prefix_match)[:: 1 if full else -1]
        if value is None:
            raise ValueError(f"{wanted} is required when type is {self.type}")
        if unwanted is not None:
            raise ValueError(f"{other} must not be set when type is {self.type}")
        _check_path(value)
        return self

    @property
    def value(self) -> str:
        """The replacement (full path or prefix), whichever the type names."""
        found = self.replace_full_path if self.type == "ReplaceFullPath" else None
        return found if found is not None else (self.replace_prefix_match or "")


class HTTPRequestRedirectFilter(ApiModel):
    scheme: Literal["http", "https"] | None = None
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None
    port: PortNumber | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class HTTPURLRewriteFilter(ApiModel):
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None


class MirrorFraction(ApiModel):
    numerator: int = Field(ge=0)
    denominator: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _ratio(self) -> MirrorFraction:
        if self.numerator > self.denominator:
            raise ValueError("numerator must be less than or equal to denominator")
        return self


class HTTPRequestMirrorFilter(ApiModel):
    backend_ref: BackendObjectReference
    percent: int | None = Field(default=None, ge=0, le=100)
    fraction: MirrorFraction | None = None

    @model_validator(mode="after")
    def _one(self) -> HTTPRequestMirrorFilter:
        if self.percent is not None and self.fraction is not None:
            raise ValueError("only one of percent or fraction may be set")
        return self

    @property
    def share(self) -> float:
        """The mirrored share in percent (100 when neither is given)."""
        if self.fraction is not None:
            return 100.0 * self.fraction.numerator / self.fraction.denominator
        return 100.0 if self.percent is None else float(self.percent)


class HTTPCORSFilter(ApiModel):
    """The experimental CORS filter (Gateway API v1.2+)."""

    allow_origins: list[str] = Field(default_factory=list, max_length=64)
    allow_credentials: bool | None = None
    allow_methods: list[str] = Field(default_factory=list, max_length=9)
    allow_headers: list[str] = Field(default_factory=list, max_length=64)
    expose_headers: list[str] = Field(default_factory=list, max_length=64)
    max_age: int = Field(default=5, ge=1)


_FILTER_FIELDS = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
    "RequestRedirect": "request_redirect",
    "URLRewrite": "url_rewrite",
    "ExtensionRef": "extension_ref",
    "CORS": "cors",
}


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w.capitalize() for w in rest).replace("Url", "URL")


class HTTPRouteFilter(ApiModel):
    type: Literal[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestMirror",
        "RequestRedirect",
        "URLRewrite",
        "ExtensionRef",
        "CORS",
    ]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = Field(default=None, alias="urlRewrite")
    extension_ref: LocalObjectReference | None = None
    cors: HTTPCORSFilter | None = None

    @model_validator(mode="after")
    def _matching_field(self) -> HTTPRouteFilter:
        check_filter_fields(self, _FILTER_FIELDS)
        return self


def check_filter_fields(model: ApiModel, fields: dict[str, str]) -> None:
    """A filter of type T has exactly T's field set (the CRD's CEL rules)."""
    kind = str(vars(model)["type"])
    own = fields[kind]
    if getattr(model, own) is None:
        raise ValueError(f"{_camel(own)} must be set for filter type {kind}")
    for field_name in fields.values():
        if field_name != own and getattr(model, field_name) is not None:
            raise ValueError(f"{_camel(field_name)} must not be set for filter type {kind}")


_ONCE = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite", "CORS")


def check_filters(filters: list[HTTPRouteFilter]) -> None:
    """At most one of each modifier, redirect and rewrite, and not both of the latter."""
    types: list[str] = [f.type for f in filters]
    for once in _ONCE:
        if types.count(once) > 1:
            raise ValueError(f"filter {once} may appear at most once")
    if "RequestRedirect" in types and "URLRewrite" in types:
        raise ValueError("RequestRedirect and URLRewrite filters cannot both be set")


class HTTPBackendRef(BackendObjectReference):
    weight: Weight = 1
    filters: list[HTTPRouteFilter] = Field(default_factory=list, max_length=16)

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: list[HTTPRouteFilter]) -> list[HTTPRouteFilter]:
        check_filters(value)
        return value


class HTTPRouteTimeouts(ApiModel):
    request: GatewayDuration | None = None
    backend_request: GatewayDuration | None = None

    @model_validator(mode="after")
    def _order(self) -> HTTPRouteTimeouts:
        if self.request is not None and self.backend_request is not None:
            request, backend = (
                gateway_duration_ms(self.request),
                gateway_duration_ms(self.backend_request),
            )
            if request != 0 and (backend == 0 or backend > request):
                raise ValueError("backendRequest must be no longer than request")
        return self


class HTTPRouteRetry(ApiModel):
    """The experimental ``retry`` of a rule (GEP-1731): retry a request on
    connection errors and, when listed, on these response codes."""

    codes: list[Annotated[int, Field(ge=400, le=599)]] = Field(default_factory=list)
    attempts: int | None = Field(default=None, ge=0)
    backoff: GatewayDuration | None = None


def _default_matches() -> list[HTTPRouteMatch]:
    return [HTTPRouteMatch()]


class HTTPRouteRule(ApiModel):
    name: SectionName | None = None
    matches: list[HTTPRouteMatch] = Field(default_factory=_default_matches, max_length=64)
    filters: list[HTTPRouteFilter] = Field(default_factory=list, max_length=16)
    backend_refs: list[HTTPBackendRef] = Field(default_factory=list, max_length=16)
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None
    # An experimental field Istio accepts; kept so such routes load (not applied yet).
    session_persistence: dict[str, object] | None = None

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: list[HTTPRouteFilter]) -> list[HTTPRouteFilter]:
        check_filters(value)
        return value

    @model_validator(mode="after")
    def _prefix_rewrite(self) -> HTTPRouteRule:
        for f in self.filters:
            modifier = (f.request_redirect or f.url_rewrite or _NO_PATH).path
            if modifier is None or modifier.type != "ReplacePrefixMatch":
                continue
            if len(self.matches) != 1 or self.matches[0].path.type != "PathPrefix":
                raise ValueError(
                    "ReplacePrefixMatch needs exactly one match, of path type PathPrefix"
                )
        return self


_NO_PATH = HTTPURLRewriteFilter()


def _default_rules() -> list[HTTPRouteRule]:
    return [HTTPRouteRule()]


class HTTPRouteSpec(ApiModel):
    parent_refs: list[ParentReference] = Field(default_factory=list, max_length=32)
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: Annotated[list[HTTPRouteRule], Field(max_length=16)] = Field(
        default_factory=_default_rules
    )

    @model_validator(mode="after")
    def _unique_rule_names(self) -> HTTPRouteSpec:
        names = [r.name for r in self.rules if r.name]
        if len(names) != len(set(names)):
            raise ValueError("rule names must be unique within a route")
        return self
