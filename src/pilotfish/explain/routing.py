"""Virtual host and route selection, with Envoy's rules.

Theory of operation. Envoy picks the virtual host of a route configuration by
the request's ``:authority`` (case-insensitive, compared with its port when it
has one, as Envoy does without ``strip_any_host_port``) in four passes: an
exact domain, then the longest ``*.suffix`` / ``*suffix`` wildcard, then the
longest ``prefix.*`` / ``prefix*`` wildcard, then ``*``. Wildcards must cover
at least one character. Within the virtual host routes are tried in order and
the first whose every condition holds wins: the path (prefix, exact, or an
RE2 full match, on the path without its query string; ``ignore_case`` folds
case), every header matcher (absent, present, value; ``invert`` negates) and
every query parameter matcher. For each route passed over, the first
condition that failed is the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish import ir
from pilotfish.explain.match import describe, string_match
from pilotfish.explain.request import ExplainRequest

__all__ = ["match_route", "select_virtual_host", "why_not"]


def _wildcard_fit(domain: str, host: str) -> tuple[int, int] | None:
    """(pass, specificity) when ``domain`` covers ``host``; pass 0 exact, 1 suffix
    wildcard, 2 prefix wildcard, 3 ``*``."""
    if domain == "*":
        return (3, 0)
    if domain == host:
        return (0, len(domain))
    if domain.startswith("*") and len(host) > len(domain) - 1 and host.endswith(domain[1:]):
        return (1, len(domain))
    if domain.endswith("*") and len(host) > len(domain) - 1 and host.startswith(domain[:-1]):
        return (2, len(domain))
    return None


def select_virtual_host(
    config: ir.RouteConfig, authority: str
) -> tuple[ir.VirtualHost | None, str, list[str]]:
    """The virtual host serving ``authority``, the domain that matched, and why."""
    host = authority.lower()
    best: tuple[tuple[int, int], ir.VirtualHost, str] | None = None
    for vh in config.virtual_hosts:
        for domain in vh.domains:
            fit = _wildcard_fit(domain.lower(), host)
            if fit is None:
                continue
            key = (fit[0], -fit[1])
            if best is None or key < (best[0][0], -best[0][1]):
                best = (fit, vh, domain)
    if best is None:
        return (
            None,
            "",
            [
                f"no virtual host of {config.name} has a domain matching {authority!r}: "
                "Envoy answers 404"
            ],
        )
    kind = ("exact domain", "suffix wildcard", "prefix wildcard", "catch-all domain")[best[0][0]]
    reasons = [f"{kind} {best[2]!r} matches {authority!r}"]
    if best[0][0] > 0:
        reasons.append("no virtual host has a more specific domain for it")
    return best[1], best[2], reasons


def _header_reason(h: ir.HeaderMatch, request: ExplainRequest) -> str | None:
    """Why header matcher ``h`` fails for ``request`` (None: it matches)."""
    value = request.header(h.name)
    if h.match is None or (h.match.kind == "prefix" and h.match.value == ""):
        ok = value is not None
        want = f"header {h.name} present"
    else:
        ok = value is not None and string_match(h.match, value)
        want = f"header {h.name} {describe(h.match)}"
    if h.invert:
        ok, want = not ok, f"not ({want})"
    if ok:
        return None
    return (
        f"needs {want}, request has {h.name}={value!r}"
        if value is not None
        else (f"needs {want}, request has no {h.name}")
    )


def why_not(route: ir.Route, request: ExplainRequest) -> str | None:
    """The first condition of ``route`` that ``request`` fails (None: it matches)."""
    m = route.match
    if not string_match(m.path, request.path):
        return f"path {request.path!r} does not match {describe(m.path)}"
    for h in m.headers:
        reason = _header_reason(h, request)
        if reason is not None:
            return reason
    for q in m.query_params:
        value = request.query_param(q.name)
        if value is None:
            return f"needs query parameter {q.name}, request has none"
        any_value = q.match is None or (q.match.kind == "prefix" and q.match.value == "")
        if q.match is not None and not any_value and not string_match(q.match, value):
            return f"query parameter {q.name}={value!r} does not match {describe(q.match)}"
    for c in m.claims:
        # An explained request carries no verified JWT: no claim is present, so a
        # claim match fails and its withoutHeaders form holds.
        if not c.invert:
            return f"needs JWT claim {'.'.join(c.claims)} (the request has no verified token)"
    return None


def match_route(
    routes: Sequence[ir.Route], request: ExplainRequest
) -> tuple[ir.Route | None, list[str]]:
    """The first route matching ``request``, and why each earlier one did not."""
    reasons: list[str] = []
    for route in routes:
        reason = why_not(route, request)
        if reason is None:
            reasons.append(f"route {route.name or '(unnamed)'} matches ({_summary(route.match)})")
            return route, reasons
        reasons.append(f"route {route.name or '(unnamed)'} skipped: {reason}")
    reasons.append("no route matches: Envoy answers 404")
    return None, reasons


def _summary(m: ir.RouteMatch) -> str:
    parts = [f"path {describe(m.path)}"]
    parts += [f"header {h.name}" + (" absent" if h.invert else "") for h in m.headers]
    parts += [f"query {q.name}" for q in m.query_params]
    parts += [f"JWT claim {'.'.join(c.claims)}" + (" absent" if c.invert else "") for c in m.claims]
    return ", ".join(parts)
