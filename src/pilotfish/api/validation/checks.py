"""Small field checkers shared by the validators.

Each returns None when the value is fine, else a short reason; the caller
attaches the field path. The rules follow Kubernetes and Istio validation.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

import re2  # type: ignore[import-untyped]

from pilotfish.api.duration import parse_duration_ms

__all__ = [
    "KNOWN_PROTOCOLS",
    "check_cidr_or_ip",
    "check_dns1123_label",
    "check_dns1123_subdomain",
    "check_duration",
    "check_export_to",
    "check_header_name",
    "check_host",
    "check_label_key",
    "check_label_value",
    "check_percent",
    "check_port",
    "check_protocol",
    "check_regex",
    "label_problems",
    "protocol_family",
]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_LABEL_ANY_CASE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

#: Istio protocol names (compared case-insensitively) -> family used by checks.
KNOWN_PROTOCOLS: Mapping[str, str] = {
    "HTTP": "http",
    "HTTP2": "http",
    "HTTP_PROXY": "http",
    "GRPC": "http",
    "GRPC-WEB": "http",
    "HTTPS": "tls",
    "TLS": "tls",
    "TCP": "tcp",
    "MONGO": "tcp",
    "MYSQL": "tcp",
    "REDIS": "tcp",
    "UDP": "udp",
}


def check_dns1123_label(value: str, what: str = "name") -> str | None:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        return (
            f"invalid {what} {value!r}: must be a DNS-1123 label (lower case letters, digits "
            "and '-', at most 63 characters, starting and ending with a letter or digit)"
        )
    return None


def check_dns1123_subdomain(value: str, what: str = "name") -> str | None:
    if (
        not value
        or len(value) > 253
        or any(not _DNS1123_LABEL.match(part) for part in value.split("."))
    ):
        return (
            f"invalid {what} {value!r}: must be a DNS-1123 subdomain (lower case labels "
            "separated by '.')"
        )
    return None


def check_host(host: str, *, allow_wildcard: bool = True, allow_ip: bool = False) -> str | None:
    """A DNS name, optionally with a leading ``*`` wildcard label, or ``*`` alone."""
    if not host:
        return "host must not be empty"
    if allow_ip and _is_ip(host):
        return None
    name = host
    if host == "*" or host.startswith("*."):
        if not allow_wildcard:
            return f"wildcard host {host!r} is not allowed here"
        if host == "*":
            return None
        name = host[2:]
    if len(name) > 255:
        return f"host {host!r} is longer than 255 characters"
    for label in name.rstrip(".").split("."):
        if len(label) > 63 or not _DNS_LABEL_ANY_CASE.match(label):
            return f"invalid host {host!r}: label {label!r} is not a valid DNS label"
    return None


def check_port(port: int, what: str = "port") -> str | None:
    if not 1 <= port <= 65535:
        return f"{what} {port} is out of range 1..65535"
    return None


def check_protocol(protocol: str) -> str | None:
    if protocol.upper() not in KNOWN_PROTOCOLS:
        known = ", ".join(sorted(KNOWN_PROTOCOLS))
        return f"unsupported protocol {protocol!r} (use one of {known})"
    return None


def protocol_family(protocol: str | None) -> str:
    """``http``, ``tls``, ``tcp``, ``udp`` or ``unknown`` (unset means sniffed: ``unknown``)."""
    return KNOWN_PROTOCOLS.get((protocol or "").upper(), "unknown")


def check_duration(value: str, *, minimum_ms: int = 1) -> str | None:
    """Parses, and is at least ``minimum_ms`` (Istio refuses durations under 1ms)."""
    try:
        ms = parse_duration_ms(value)
    except ValueError as exc:
        return str(exc)
    if ms < minimum_ms:
        return f"duration {value!r} must be at least {minimum_ms}ms"
    return None


def check_regex(pattern: str) -> str | None:
    """Envoy evaluates regexes with RE2, so they are checked with RE2 itself:
    a pattern Python accepts (look-ahead, back-references) may not load in Envoy."""
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return f"invalid regular expression {pattern!r} (RE2 syntax): {reason}"
    return None


def check_percent(value: float) -> str | None:
    if not 0.0 <= value <= 100.0:
        return f"percentage {value} is out of range 0..100"
    return None


def check_header_name(name: str, *, allow_authority: bool = False) -> str | None:
    if not name:
        return "header name must not be empty"
    if allow_authority and name.lower() in (":authority", "host"):
        return None
    if not _HEADER_TOKEN.match(name):
        return f"invalid header name {name!r}"
    return None


def check_cidr_or_ip(value: str) -> str | None:
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not a valid IP address or CIDR range"
    return None


def check_label_key(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and check_dns1123_subdomain(prefix) is not None:
        return f"invalid label key {key!r}: prefix must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return f"invalid label key {key!r}"
    return None


def check_label_value(value: str) -> str | None:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        return f"invalid label value {value!r}"
    return None


def label_problems(labels: Mapping[str, str], path: str) -> list[tuple[str, str]]:
    """``(field path, reason)`` for each invalid key or value of a label map."""
    problems: list[tuple[str, str]] = []
    for key, value in labels.items():
        child = f"{path}['{key}']" if any(c in key for c in ".[]") else f"{path}.{key}"
        for problem in (check_label_key(key), check_label_value(value)):
            if problem is not None:
                problems.append((child, problem))
    return problems


def check_export_to(values: Sequence[str]) -> list[tuple[int, str]]:
    """``(index, reason)`` for bad ``exportTo`` entries: ``.``, ``*``, ``~`` or a namespace."""
    problems: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        if value in (".", "*"):
            continue
        if value == "~":
            if len(values) > 1:
                problems.append((i, "'~' (export to nobody) cannot be combined with other values"))
            continue
        problem = check_dns1123_label(value, "namespace")
        if problem is not None:
            problems.append((i, problem))
    if len(set(values)) != len(values):
        problems.append((0, "duplicate entries in exportTo"))
    return problems


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
