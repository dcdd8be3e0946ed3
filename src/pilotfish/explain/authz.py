"""Authorization at the destination, with Envoy RBAC's semantics.

Theory of operation. ``xds/build/rbac.py`` turns a proxy's AuthorizationPolicies
into up to three RBAC filters run in order: DENY, ALLOW, AUDIT (Pilotfish has
no CUSTOM action; an ext_authz provider would come first). A request matching
any DENY rule is denied (403); else, when ALLOW policies exist, it must match
one of their rules, or it is denied; with no ALLOW policy it is allowed. AUDIT
only marks. A rule matches when any of its source sets, any of its operation
sets and every condition match; a set is an AND of fields, a field an OR of
values (``not`` forms negate that OR), with Istio's string rules.

Logic is three-valued: a field that depends on something explain cannot know
(the caller's IP as the destination sees it) is unknown, and so is a verdict
that hinges on it; the reason names the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotfish import ir
from pilotfish.explain.match import istio_match
from pilotfish.explain.request import ExplainRequest

__all__ = ["AuthzContext", "Verdict", "evaluate"]

Tri = bool | None  # None: unknown


@dataclass(frozen=True)
class AuthzContext:
    """What RBAC sees: the peer's mTLS identity (``td/ns/x/sa/y``, "" without mTLS),
    the verified JWT claims (None: no token), the destination port and the request."""

    request: ExplainRequest
    principal: str = ""
    claims: dict[str, Any] | None = None
    destination_port: int = 0
    destination_ip: str = ""
    source_ip: str = ""


@dataclass
class Verdict:
    decision: str  # ALLOW, DENY or UNKNOWN
    policy: str = ""  # "<ns>/<name>" that decided, "" for the default
    rule: int | None = None
    reasons: list[str] = field(default_factory=list)


def _cidr(value: str, ip: str) -> Tri:
    if not ip:
        return None
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False


def _claim(claims: dict[str, Any] | None, path: Sequence[str]) -> list[str]:
    node: Any = claims
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return []
        node = node[key]
    if isinstance(node, list):
        return [str(v) for v in node]
    return [] if node is None else [str(node)]


_PORT_RE = re.compile(r":[0-9]+$")


def _host(value: str, host: str) -> bool:
    if _PORT_RE.search(value):
        return istio_match(value, host, ignore_case=True)
    return istio_match(value, _PORT_RE.sub("", host), ignore_case=True) or (
        value.endswith("*") and istio_match(value, host, ignore_case=True)
    )


def _value(m: ir.AuthzMatch, v: str, ctx: AuthzContext) -> Tri:
    """Whether one value of field ``m`` matches."""
    req = ctx.request
    f = m.field
    if f == "source.principal":
        return bool(ctx.principal) and istio_match(v, ctx.principal)
    if f == "source.namespace":
        found = re.search(r"/ns/([^/]+)/", ctx.principal)
        return found is not None and istio_match(v, found.group(1))
    if f in ("source.ip", "remote.ip"):
        return _cidr(v, ctx.source_ip)
    if f == "request.auth.principal":
        issuer, slash, subject = v.rpartition("/")
        if not slash:
            issuer, subject = v, ""
        iss = _claim(ctx.claims, ["iss"])
        ok = any(istio_match(issuer or "*", x) for x in iss)
        return ok and (
            not subject or any(istio_match(subject, x) for x in _claim(ctx.claims, ["sub"]))
        )
    if f in ("request.auth.claims", "request.auth.audiences", "request.auth.presenter"):
        path = {"request.auth.audiences": ["aud"], "request.auth.presenter": ["azp"]}.get(
            f, m.key.split(".")
        )
        return any(istio_match(v, x) for x in _claim(ctx.claims, path))
    if f == "request.headers":
        have = req.header(m.key)
        return have is not None and (v == "*" or istio_match(v, have))
    if f == "request.method":
        return istio_match(v, req.method)
    if f == "request.path":
        return istio_match(v, req.path)
    if f == "request.host":
        return _host(v, req.authority)
    if f == "destination.port":
        return v.isdigit() and int(v) == ctx.destination_port
    if f == "destination.ip":
        return _cidr(v, ctx.destination_ip)
    if f == "connection.sni":
        return None
    return None


def _any(values: Sequence[Tri]) -> Tri:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _all(values: Sequence[Tri]) -> Tri:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _field(m: ir.AuthzMatch, ctx: AuthzContext) -> Tri:
    hit = _any([_value(m, v, ctx) for v in m.values])
    return (None if hit is None else not hit) if m.negate else hit


def _describe(m: ir.AuthzMatch) -> str:
    key = f"[{m.key}]" if m.key else ""
    return f"{'not ' if m.negate else ''}{m.field}{key} in {list(m.values)}"


def _set(matches: Sequence[ir.AuthzMatch], ctx: AuthzContext, why: list[str]) -> Tri:
    results = []
    for m in matches:
        if not m.values:
            continue  # unset field
        r = _field(m, ctx)
        if r is not True:
            why.append(f"{_describe(m)}: {'unknown here' if r is None else 'no'}")
        results.append(r)
    return _all(results)


def rule_matches(rule: ir.AuthzRule, ctx: AuthzContext) -> tuple[Tri, list[str]]:
    """Whether ``rule`` matches and, if not, the first failing parts."""
    why: list[str] = []
    parts: list[Tri] = []
    for sets in (rule.sources, rule.operations):
        if sets:
            parts.append(_any([_set(s, ctx, why) for s in sets]))
    parts.append(_set(rule.conditions, ctx, why))
    return _all(parts), why


def _first_match(
    policies: Sequence[ir.AuthzPolicy], ctx: AuthzContext, reasons: list[str]
) -> tuple[Tri, str, int | None]:
    unknown: tuple[str, int] | None = None
    for policy in policies:
        for i, rule in enumerate(policy.rules):
            hit, why = rule_matches(rule, ctx)
            label = f"{policy.action} {policy.name} rule {i}"
            if hit is True:
                reasons.append(f"{label} matches")
                return True, policy.name, i
            reasons.append(
                f"{label} {'may match' if hit is None else 'does not match'}: {'; '.join(why[:3])}"
            )
            if hit is None and unknown is None:
                unknown = (policy.name, i)
        if not policy.rules:
            reasons.append(f"{policy.action} {policy.name} has no rules: it matches nothing")
    if unknown is not None:
        return None, unknown[0], unknown[1]
    return False, "", None


def evaluate(policies: Sequence[ir.AuthzPolicy], ctx: AuthzContext) -> Verdict:
    """The RBAC verdict for ``ctx`` under ``policies`` (one HTTP connection manager's)."""
    reasons: list[str] = []
    deny = [p for p in policies if p.action == "DENY"]
    allow = [p for p in policies if p.action == "ALLOW"]
    audit = [p for p in policies if p.action == "AUDIT"]
    hit, name, rule = _first_match(deny, ctx, reasons)
    if hit is True:
        return Verdict("DENY", name, rule, [*reasons, "denied (403, RBAC: access denied)"])
    if hit is None:
        return Verdict(
            "UNKNOWN", name, rule, [*reasons, "a DENY rule depends on what explain cannot know"]
        )
    if audit:
        _first_match(audit, ctx, [])
        reasons.append("AUDIT policies only mark the request")
    if not allow:
        reasons.append(
            "no ALLOW policy applies: allowed"
            if not deny
            else "no DENY rule matches and no ALLOW policy applies: allowed"
        )
        return Verdict("ALLOW", "", None, reasons)
    hit, name, rule = _first_match(allow, ctx, reasons)
    if hit is True:
        return Verdict("ALLOW", name, rule, [*reasons, "allowed"])
    if hit is None:
        return Verdict(
            "UNKNOWN", name, rule, [*reasons, "an ALLOW rule depends on what explain cannot know"]
        )
    names = ", ".join(p.name for p in allow)
    return Verdict(
        "DENY", names, None, [*reasons, "ALLOW policies apply but none matches: denied (403)"]
    )
