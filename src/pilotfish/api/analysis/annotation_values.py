"""What a valid value is for the Istio annotations whose values Istio checks.

Istio's analyzer (IST0125 InvalidAnnotation) checks the values of the
annotations its sidecar injector reads (``pkg/kube/inject/validate.go``):
interception mode, ports and port lists, CIDR lists, interface names,
unsigned integers, booleans, resource quantities and ``proxy.istio.io/config``.
Each check here returns the problem, or None for a good value. The rules are
Istio's (Go's ``strconv`` and ``netip`` parsing, Kubernetes quantities);
``proxy.istio.io/config`` is only checked to be a YAML mapping (Pilotfish
does not read a ProxyConfig from annotations, Istio also checks its fields).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Final

import yaml

__all__ = ["VALIDATORS"]

Validator = Callable[[str], str | None]

# Kubernetes resource.Quantity: a signed decimal, then a binary or decimal SI
# suffix or a decimal exponent (k8s.io/apimachinery/pkg/api/resource).
_QUANTITY = re.compile(
    r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_INTERFACE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-]*$")
# Go's strconv.ParseBool.
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_BOOLS = frozenset((*_TRUE, "0", "f", "F", "FALSE", "false", "False"))


def _uint(value: str, bits: int) -> int | None:
    text = value.strip() if bits == 16 else value
    if not text.isdigit() or not text.isascii():
        return None
    number = int(text)
    return number if number < 2**bits else None


def _interception_mode(value: str) -> str | None:
    if value in ("REDIRECT", "TPROXY", "NONE"):
        return None
    return f"interceptionMode invalid, use REDIRECT, TPROXY or NONE: {value!r}"


def _uint32(value: str) -> str | None:
    return None if _uint(value, 32) is not None else f"{value!r} is not an unsigned 32-bit integer"


def _port(value: str) -> str | None:
    return None if _uint(value, 16) is not None else f"{value!r} is not a port (0-65535)"


def _port_list(name: str, *, star: bool = False) -> Validator:
    def check(value: str) -> str | None:
        if star and value == "*":
            return None
        text = value.strip()
        for part in text.split(",") if text else ():
            if _uint(part, 16) is None:
                return f"{name} invalid: {part!r} is not a port (0-65535)"
        return None

    return check


def _cidr_list(name: str, *, star: bool = False) -> Validator:
    def check(value: str) -> str | None:
        if star and value == "*":
            return None
        for part in value.split(",") if value else ():
            try:
                if "/" not in part:
                    raise ValueError(part)
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                return f"{name} invalid: {part!r} is not a CIDR (address/prefix length)"
        return None

    return check


def _interfaces(value: str) -> str | None:
    for part in value.split(",") if value else ():
        name = part.strip()
        if not name:
            return "empty interface name"
        if len(name) > 15:
            return f"interface name {name!r} too long (max 15 characters)"
        if not _INTERFACE.match(name):
            return f"interface name {name!r} contains invalid characters"
    return None


def _bool(value: str) -> str | None:
    return None if value in _BOOLS else f"{value!r} is not a boolean (true or false)"


def _quantity(value: str) -> str | None:
    if _QUANTITY.match(value):
        return None
    return f"{value!r} is not a Kubernetes resource quantity (such as 100m, 128Mi)"


def _proxy_config(value: str) -> str | None:
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return "not YAML: a ProxyConfig is a YAML (or JSON) mapping of its fields"
    if parsed is not None and not isinstance(parsed, dict):
        return "a ProxyConfig is a YAML (or JSON) mapping of its fields"
    return None


#: Annotation name -> its value check, for the annotations Istio checks.
VALIDATORS: Final[MappingProxyType[str, Validator]] = MappingProxyType(
    {
        "sidecar.istio.io/interceptionMode": _interception_mode,
        "status.sidecar.istio.io/port": _port,
        "readiness.status.sidecar.istio.io/initialDelaySeconds": _uint32,
        "readiness.status.sidecar.istio.io/periodSeconds": _uint32,
        "readiness.status.sidecar.istio.io/failureThreshold": _uint32,
        "traffic.sidecar.istio.io/includeOutboundIPRanges": _cidr_list(
            "includeOutboundIPRanges", star=True
        ),
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": _cidr_list("excludeOutboundIPRanges"),
        "traffic.sidecar.istio.io/includeInboundPorts": _port_list(
            "includeInboundPorts", star=True
        ),
        "traffic.sidecar.istio.io/excludeInboundPorts": _port_list("excludeInboundPorts"),
        "traffic.sidecar.istio.io/excludeOutboundPorts": _port_list("excludeOutboundPorts"),
        "traffic.sidecar.istio.io/excludeInterfaces": _interfaces,
        "traffic.sidecar.istio.io/kubevirtInterfaces": _interfaces,
        "istio.io/reroute-virtual-interfaces": _interfaces,
        "prometheus.istio.io/merge-metrics": _bool,
        "proxy.istio.io/config": _proxy_config,
        "sidecar.istio.io/proxyCPU": _quantity,
        "sidecar.istio.io/proxyMemory": _quantity,
        "sidecar.istio.io/proxyCPULimit": _quantity,
        "sidecar.istio.io/proxyMemoryLimit": _quantity,
    }
)
