"""Types shared by the Gateway API kinds: references, hostnames, ports, label selectors.

The Gateway API publishes its rules as OpenAPI patterns and CEL expressions in
its CRDs; here they are pydantic validators, so a bad value is an error at its
own field (``spec.rules[0].backendRefs[1].weight``) with the reason.
Defaults are the CRDs' defaults (a parentRef's group is
``gateway.networking.k8s.io`` and its kind ``Gateway``; a backendRef's kind is
``Service`` with weight 1), applied when the object is parsed so that the
converter never has to repeat them.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, model_validator

from pilotfish.api.base import ApiModel

__all__ = [
    "GROUP",
    "BackendObjectReference",
    "BackendRef",
    "GatewayDuration",
    "HeaderName",
    "Hostname",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LocalObjectReference",
    "ObjectName",
    "ParentReference",
    "PortNumber",
    "PreciseHostname",
    "SecretObjectReference",
    "SectionName",
    "Weight",
    "check_hostname",
    "gateway_duration_ms",
]

#: The Gateway API's group.
GROUP: Final = "gateway.networking.k8s.io"

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_HOSTNAME_RE: Final = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_IPV4_RE: Final = re.compile(r"^[0-9]+(\.[0-9]+){3}$")
_SECTION_RE: Final = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_HEADER_NAME_RE: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_DURATION_RE: Final = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_DURATION_PART_RE: Final = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_DURATION_MS: Final = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def check_hostname(value: str, *, wildcard: bool = True) -> str:
    """A Gateway API Hostname: a lower-case DNS name, optionally ``*.`` first.

    IP addresses are refused, as the spec says a hostname "is not an IP".
    """
    if len(value) > 253:
        raise ValueError(f"hostname {value!r} is longer than 253 characters")
    if not _HOSTNAME_RE.match(value) or (not wildcard and value.startswith("*")):
        form = "a DNS name, optionally starting with '*.'" if wildcard else "a DNS name"
        raise ValueError(f"hostname {value!r} must be {form} (lower case)")
    if _IPV4_RE.match(value):
        raise ValueError(f"hostname {value!r} must not be an IP address")
    return value


def _precise(value: str) -> str:
    return check_hostname(value, wildcard=False)


def _section(value: str) -> str:
    if not value or len(value) > 253 or not _SECTION_RE.match(value):
        raise ValueError(f"{value!r} must be a DNS subdomain name (lower case, 1-253 chars)")
    return value


def _object_name(value: str) -> str:
    if not value or len(value) > 253:
        raise ValueError("name must have 1 to 253 characters")
    return value


def _header_name(value: str) -> str:
    if not value or len(value) > 256 or not _HEADER_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid HTTP header name")
    return value


def _duration(value: str) -> str:
    if not _DURATION_RE.match(value):
        raise ValueError(
            f"duration {value!r} must be like '10s', '500ms' or '1h30m' (units h, m, s, ms)"
        )
    return value


def gateway_duration_ms(value: str) -> int:
    """Milliseconds of a Gateway API Duration (``1h2m3s4ms``); assumes it validated."""
    return sum(int(n) * _DURATION_MS[unit] for n, unit in _DURATION_PART_RE.findall(value))


Hostname = Annotated[str, AfterValidator(check_hostname)]
PreciseHostname = Annotated[str, AfterValidator(_precise)]
SectionName = Annotated[str, AfterValidator(_section)]
ObjectName = Annotated[str, AfterValidator(_object_name)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
GatewayDuration = Annotated[str, AfterValidator(_duration)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
Weight = Annotated[int, Field(ge=0, le=1_000_000)]


class ParentReference(ApiModel):
    """A route's parent: a Gateway (default), or a Service for mesh (GAMMA) routes."""

    group: str = GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    name: ObjectName
    section_name: SectionName | None = None
    port: PortNumber | None = None


class BackendObjectReference(ApiModel):
    """A backend: a Service (default kind) and its port."""

    group: str = ""
    kind: str = "Service"
    name: ObjectName
    namespace: str | None = None
    port: PortNumber | None = None

    @model_validator(mode="after")
    def _service_port(self) -> BackendObjectReference:
        if self.group == "" and self.kind == "Service" and self.port is None:
            raise ValueError("port is required when referring to a Service")
        return self


class BackendRef(BackendObjectReference):
    """A weighted backend (TCPRoute, TLSRoute): weight 0 takes no traffic."""

    weight: Weight = 1


class SecretObjectReference(ApiModel):
    """A listener certificate: a Secret (default) in the Gateway's namespace or another."""

    group: str = ""
    kind: str = "Secret"
    name: ObjectName
    namespace: str | None = None


class LocalObjectReference(ApiModel):
    """An object in the referrer's namespace (ExtensionRef, CA certificate ConfigMaps)."""

    group: str
    kind: str
    name: ObjectName


class LabelSelectorRequirement(ApiModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values must be non-empty for operator {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values must be empty for operator {self.operator}")
        return self


class LabelSelector(ApiModel):
    """Kubernetes' LabelSelector; an empty selector selects everything."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
            if req.operator == "In" and labels.get(req.key) not in req.values:
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
        return True
