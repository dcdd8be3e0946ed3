"""AuthorizationPolicy -> IR ``AuthzPolicy`` for one proxy and one port.

Theory of operation. ``authz_policies(snapshot, namespace, labels, port)`` picks
the policies that apply to the workload (``selection.selected_policies``) and
rewrites each rule into ``AuthzMatch`` sets with Istio's attribute names. The
rules are specialized to the port the HTTP connection manager serves (every
inbound chain and gateway listener serves exactly one): ``ports`` /
``notPorts`` and ``destination.port`` conditions are decided here, so an
operation that cannot match this port is dropped, and a rule left with no
possible operation is dropped. A policy whose rules are all dropped keeps its
place with no rules: for ALLOW it still "applies to the workload", so a
request on this port must match another ALLOW policy, exactly as in Istio.

Fields the data plane cannot check fail closed: an ALLOW (or AUDIT) rule that
uses one is dropped (allows less); in a DENY rule that condition is left out
(denies more). CUSTOM policies need an external authorizer and are not
translated.

TCP ports (``tcp=True``) follow Istio's "authorization for TCP traffic": a
connection has no request, so the HTTP-only fields (``requestPrincipals``,
``hosts``, ``methods``, ``paths`` and their ``not`` forms, and the
``request.*`` conditions) cannot be evaluated. An ALLOW rule naming any of
them is dropped whole, even in an operation for another port (it never
matches); DENY and AUDIT rules keep their other fields and leave those out, so
they match more connections (a DENY rule of only ``methods`` denies every
connection). Principals, namespaces, IP blocks, ports, ``source.ip``,
``remote.ip``, ``destination.ip`` and ``connection.sni`` apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pilotfish.api.resource import Resource
from pilotfish.api.security.authorization_policy import (
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Rule,
    Source,
)
from pilotfish.ir.security import AuthzMatch, AuthzPolicy, AuthzRule
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.security.selection import selected_policies

__all__ = [
    "AUTHORIZATION_POLICY",
    "HTTP_ONLY_FIELDS",
    "authz_policies",
    "condition_matches",
    "translate_policy",
    "uses_http_only_fields",
]

AUTHORIZATION_POLICY = "AuthorizationPolicy"

# ``when`` keys with a fixed attribute (the others carry ``[key]``).
_PLAIN_KEYS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "connection.sni",
    }
)
# Attributes of an HTTP request, which a plain TCP connection does not have.
HTTP_ONLY_FIELDS = frozenset(
    {
        "request.auth.principal",
        "request.auth.claims",
        "request.auth.audiences",
        "request.auth.presenter",
        "request.headers",
        "request.host",
        "request.method",
        "request.path",
    }
)
_BRACKETED = re.compile(r"^(request\.headers|request\.auth\.claims)((?:\[[^\[\]]+\])+)$")


class _Never(Exception):
    """The rule can never match on this port."""


class _Unsupported(Exception):
    """The rule uses an attribute the data plane cannot check."""


def _pairs(field: str, values: list[str], not_values: list[str], key: str = "") -> list[AuthzMatch]:
    out = []
    if values:
        out.append(AuthzMatch(field, tuple(values), key))
    if not_values:
        out.append(AuthzMatch(field, tuple(not_values), key, negate=True))
    return out


def _source(source: Source | None) -> tuple[AuthzMatch, ...]:
    if source is None:
        return ()
    s = source
    return (
        *_pairs("source.principal", s.principals, s.not_principals),
        *_pairs("request.auth.principal", s.request_principals, s.not_request_principals),
        *_pairs("source.namespace", s.namespaces, s.not_namespaces),
        *_pairs("source.ip", s.ip_blocks, s.not_ip_blocks),
        *_pairs("remote.ip", s.remote_ip_blocks, s.not_remote_ip_blocks),
    )


def _check_port(values: list[str], not_values: list[str], port: int) -> None:
    """Decide a port condition now; raises ``_Never`` when it excludes ``port``."""
    if values and str(port) not in {v.strip() for v in values}:
        raise _Never
    if str(port) in {v.strip() for v in not_values}:
        raise _Never


def _operation(operation: Operation | None, port: int) -> tuple[AuthzMatch, ...]:
    if operation is None:
        return ()
    op = operation
    _check_port(op.ports, op.not_ports, port)
    return (
        *_pairs("request.host", op.hosts, op.not_hosts),
        *_pairs("request.method", op.methods, op.not_methods),
        *_pairs("request.path", op.paths, op.not_paths),
    )


def condition_matches(condition: Condition, port: int) -> list[AuthzMatch]:
    """The matches of one ``when`` condition (empty when decided true for ``port``).

    Raises ``_Never`` when it is false on ``port`` and ``_Unsupported`` for a key
    the data plane cannot check.
    """
    key = condition.key.strip()
    if key == "destination.port":
        _check_port(condition.values, condition.not_values, port)
        return []
    if key in _PLAIN_KEYS:
        return _pairs(key, condition.values, condition.not_values)
    bracketed = _BRACKETED.match(key)
    if bracketed is None:
        raise _Unsupported(key)
    field, subscripts = bracketed.groups()
    names = re.findall(r"\[([^\[\]]+)\]", subscripts)
    if field == "request.headers":
        if len(names) != 1:
            raise _Unsupported(key)
        return _pairs(field, condition.values, condition.not_values, names[0].lower())
    return _pairs(field, condition.values, condition.not_values, ".".join(names))


def uses_http_only_fields(rule: Rule) -> bool:
    """Whether ``rule`` names an attribute only HTTP requests have, anywhere (in
    any source, any operation whatever its ports, or a ``when`` condition)."""
    for f in rule.from_:
        s = f.source
        if s is not None and (s.request_principals or s.not_request_principals):
            return True
    for to in rule.to:
        op = to.operation
        if op is not None and (
            op.hosts or op.not_hosts or op.methods or op.not_methods or op.paths or op.not_paths
        ):
            return True
    return any(
        c.key.strip().startswith("request.") and (c.values or c.not_values) for c in rule.when
    )


def _tcp_only(matches: tuple[AuthzMatch, ...]) -> tuple[AuthzMatch, ...]:
    return tuple(m for m in matches if m.field not in HTTP_ONLY_FIELDS)


def _rule(rule: Rule, port: int, action: str, tcp: bool) -> AuthzRule | None:
    """``rule`` specialized to ``port`` (and to TCP connections when ``tcp``); None
    when it can never match there (or, for ALLOW/AUDIT, uses an attribute that
    cannot be checked; on TCP, for ALLOW, names an HTTP-only field)."""
    if tcp and action == "ALLOW" and uses_http_only_fields(rule):
        return None
    deny = action == "DENY"
    sources = tuple(_source(f.source) for f in rule.from_)
    operations: list[tuple[AuthzMatch, ...]] = []
    for to in rule.to:
        try:
            operations.append(_operation(to.operation, port))
        except _Never:
            continue
    if rule.to and not operations:
        return None
    conditions: list[AuthzMatch] = []
    for condition in rule.when:
        try:
            conditions.extend(condition_matches(condition, port))
        except _Never:
            return None
        except _Unsupported:
            if not deny:
                return None
    if tcp:
        # DENY/AUDIT: leave the HTTP-only fields out (a set left empty is "any").
        sources = tuple(_tcp_only(s) for s in sources)
        operations = [_tcp_only(o) for o in operations]
        conditions = list(_tcp_only(tuple(conditions)))
    return AuthzRule(
        # An empty set inside an OR matches anything: the whole OR is "any".
        sources=() if any(not s for s in sources) else sources,
        operations=() if any(not o for o in operations) else tuple(operations),
        conditions=tuple(conditions),
    )


def translate_policy(resource: Resource, port: int, *, tcp: bool = False) -> AuthzPolicy | None:
    """One AuthorizationPolicy as it applies on ``port`` (None for CUSTOM); ``tcp``:
    to plain TCP connections (see the module docstring)."""
    spec = resource.spec
    assert isinstance(spec, AuthorizationPolicySpec)
    if spec.action == "CUSTOM":
        return None
    rules = tuple(
        r for rule in spec.rules if (r := _rule(rule, port, spec.action, tcp)) is not None
    )
    return AuthzPolicy(f"{resource.namespace}/{resource.name}", spec.action, rules)


def authz_policies(
    snapshot: Snapshot,
    namespace: str,
    labels: Mapping[str, str],
    port: int,
    *,
    tcp: bool = False,
) -> tuple[AuthzPolicy, ...]:
    """The policies enforced for a workload (``namespace``, ``labels``) on ``port``;
    ``tcp``: for plain TCP connections (HTTP-only fields handled as in Istio)."""
    out = []
    for resource in selected_policies(snapshot, AUTHORIZATION_POLICY, namespace, labels):
        policy = translate_policy(resource, port, tcp=tcp)
        if policy is not None:
            out.append(policy)
    return tuple(out)
