"""Semantic checks of an AuthorizationPolicy, following Istio's validation rules.

Istio's rules kept here: DENY (and CUSTOM) without rules is an error, since such
a policy never triggers; a ``from.source`` or ``to.operation`` must be present
and not empty; list values must not be empty strings; IP blocks are IPs or CIDRs;
ports are numbers; ``when`` keys are Istio's supported attributes, map-like keys
(``request.headers[x]``) in ``a[b]`` form. Pilotfish adds: ``*`` only as a whole
value, a prefix or a suffix (elsewhere it would be matched literally, which is
never what was meant); CUSTOM (external authorization) is not supported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.security.authorization_policy import (
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Source,
)
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings
from pilotfish.api.validation.policy_target import check_policy_target

__all__ = ["SUPPORTED_CONDITION_KEYS", "validate"]

_HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

#: Exact ``when`` keys Istio supports (map-like and prefix keys are handled apart).
SUPPORTED_CONDITION_KEYS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    }
)
_MAP_KEYS = ("request.headers", "request.auth.claims")
_ENVOY_FILTER_PREFIX = "experimental.envoy.filters."
_DISABLED_KEYS = (
    "source.user",
    "destination.labels",
    "destination.name",
    "destination.namespace",
    "destination.user",
)

_SOURCE_FIELDS = (
    ("principals", "principals"),
    ("notPrincipals", "not_principals"),
    ("requestPrincipals", "request_principals"),
    ("notRequestPrincipals", "not_request_principals"),
    ("namespaces", "namespaces"),
    ("notNamespaces", "not_namespaces"),
)
_SOURCE_IP_FIELDS = (
    ("ipBlocks", "ip_blocks"),
    ("notIpBlocks", "not_ip_blocks"),
    ("remoteIpBlocks", "remote_ip_blocks"),
    ("notRemoteIpBlocks", "not_remote_ip_blocks"),
)
_OPERATION_FIELDS = (
    ("hosts", "hosts"),
    ("notHosts", "not_hosts"),
    ("methods", "methods"),
    ("notMethods", "not_methods"),
    ("paths", "paths"),
    ("notPaths", "not_paths"),
)
_OPERATION_PORT_FIELDS = (("ports", "ports"), ("notPorts", "not_ports"))


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, AuthorizationPolicySpec)
    f = Findings(resource)
    check_policy_target(f, resource, spec.selector, spec.target_ref, spec.target_refs)
    if spec.action == "CUSTOM":
        f.error(
            "spec.action",
            "action CUSTOM (external authorization) is not supported by Pilotfish",
        )
        if spec.provider is None or not spec.provider.name:
            f.error("spec.provider.name", "provider.name must not be empty with action CUSTOM")
    elif spec.provider is not None:
        f.error("spec.provider", f"provider must not be set with action {spec.action}")
    if spec.action in ("DENY", "CUSTOM") and not spec.rules:
        f.error(
            "spec.rules",
            f"{spec.action} action without rules is meaningless as it will never be "
            "triggered; add an empty rule '{}' to trigger it for every request",
        )
    for i, rule in enumerate(spec.rules):
        path = f"spec.rules[{i}]"
        for j, rule_from in enumerate(rule.from_):
            if rule_from.source is None:
                f.error(f"{path}.from[{j}].source", "from.source must be set")
            else:
                _source(f, rule_from.source, f"{path}.from[{j}].source")
        for j, rule_to in enumerate(rule.to):
            if rule_to.operation is None:
                f.error(f"{path}.to[{j}].operation", "to.operation must be set")
            else:
                _operation(f, rule_to.operation, f"{path}.to[{j}].operation")
        for j, condition in enumerate(rule.when):
            _condition(f, condition, f"{path}.when[{j}]")
    return f.items


def _source(f: Findings, source: Source, path: str) -> None:
    if not any(getattr(source, attr) for _, attr in (*_SOURCE_FIELDS, *_SOURCE_IP_FIELDS)):
        f.error(path, "source must not be empty (set at least one field)")
    for name, attr in _SOURCE_FIELDS:
        _values(f, getattr(source, attr), f"{path}.{name}", _check_wildcard)
    for name, attr in _SOURCE_IP_FIELDS:
        _values(f, getattr(source, attr), f"{path}.{name}", checks.check_cidr_or_ip)


def _operation(f: Findings, op: Operation, path: str) -> None:
    fields = (*_OPERATION_FIELDS, *_OPERATION_PORT_FIELDS)
    if not any(getattr(op, attr) for _, attr in fields):
        f.error(path, "operation must not be empty (set at least one field)")
    for name, attr in _OPERATION_FIELDS:
        _values(f, getattr(op, attr), f"{path}.{name}", _check_wildcard)
    for name, attr in _OPERATION_PORT_FIELDS:
        _values(f, getattr(op, attr), f"{path}.{name}", _check_port_text)
    for name, attr in (("methods", "methods"), ("notMethods", "not_methods")):
        for k, method in enumerate(getattr(op, attr)):
            if method and method != "*" and method not in _HTTP_METHODS:
                hint = f" (did you mean {method.upper()!r}?)" if method.isalpha() else ""
                f.warning(
                    f"{path}.{name}[{k}]",
                    f"{method!r} is not an upper-case HTTP method{hint}; "
                    "methods are compared case-sensitively",
                )


def _condition(f: Findings, condition: Condition, path: str) -> None:
    key = condition.key
    if not key:
        f.error(f"{path}.key", "key must not be empty")
        return
    if not condition.values and not condition.not_values:
        f.error(path, f"at least one of values or notValues must be set for key {key!r}")
    check = _condition_checker(f, key, f"{path}.key")
    if check is None:
        return
    _values(f, condition.values, f"{path}.values", check)
    _values(f, condition.not_values, f"{path}.notValues", check)


def _condition_checker(f: Findings, key: str, path: str) -> Callable[[str], str | None] | None:
    """The value checker for ``key``, or None (after an error) when the key is unusable."""
    if key.startswith(_DISABLED_KEYS):
        f.error(path, f"attribute {key!r} is not supported (disabled in Istio)")
        return None
    for prefix in _MAP_KEYS:
        if key.startswith(prefix + "["):
            inner = key[len(prefix) + 1 : -1]
            if not key.endswith("]") or not inner:
                f.error(path, f"bad key {key!r}: should have the form {prefix}[name]")
                return None
            return _check_wildcard
    if key.startswith(_ENVOY_FILTER_PREFIX):
        return _accept
    if key not in SUPPORTED_CONDITION_KEYS:
        known = ", ".join([f"{p}[...]" for p in _MAP_KEYS] + sorted(SUPPORTED_CONDITION_KEYS))
        f.error(path, f"unknown attribute {key!r} (supported: {known}, {_ENVOY_FILTER_PREFIX}*)")
        return None
    if key in ("source.ip", "remote.ip", "destination.ip"):
        return checks.check_cidr_or_ip
    if key == "destination.port":
        return _check_port_text
    return _check_wildcard


def _values(
    f: Findings, values: Sequence[str], path: str, check: Callable[[str], str | None]
) -> None:
    for k, value in enumerate(values):
        if not value:
            f.error(f"{path}[{k}]", "value must not be empty")
        else:
            f.add(f"{path}[{k}]", check(value))


def _accept(value: str) -> str | None:
    return None


def _check_wildcard(value: str) -> str | None:
    """Istio matches ``*`` (present), ``prefix*``, ``*suffix`` and exact values only."""
    if "*" not in value or value == "*":
        return None
    inner = value[1:] if value.startswith("*") else value[:-1] if value.endswith("*") else value
    if "*" in inner:
        return (
            f"invalid value {value!r}: '*' is only allowed alone, as a prefix ('*suffix') "
            "or as a suffix ('prefix*')"
        )
    return None


def _check_port_text(value: str) -> str | None:
    if not value.isdigit():
        return f"port {value!r} is not a number"
    return checks.check_port(int(value))
