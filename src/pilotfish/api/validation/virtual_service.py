"""Semantic checks of a VirtualService, following Istio's validation rules.

Weights: Istio treats them as relative proportions (a destination receives
``weight / sum(weights)``), so they must not be negative and, with several
destinations, must not all be 0; they need not sum to 100.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.common import Destination, Percent, StringMatch
from pilotfish.api.networking.virtual_service import (
    Headers,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteDestination,
    RouteDestination,
    TLSRoute,
    VirtualServiceSpec,
)
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings
from pilotfish.model.jwt_claims import routing_claim

__all__ = ["validate"]

SUPPORTED_RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
CORS_METHODS = frozenset(
    {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"}
)


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, VirtualServiceSpec)
    f = Findings(resource)
    delegate = not spec.hosts
    mesh_bound = not spec.gateways or "mesh" in spec.gateways
    if delegate and spec.gateways:
        f.error("spec.gateways", "a delegate VirtualService (no hosts) must not name gateways")
    seen: set[str] = set()
    for i, host in enumerate(spec.hosts):
        path = f"spec.hosts[{i}]"
        if host == "*" and mesh_bound:
            f.error(path, "wildcard host '*' is not allowed for a VirtualService bound to the mesh")
        else:
            f.add(path, checks.check_host(host, allow_ip=True))
        if host.lower() in seen:
            f.warning(path, f"duplicate host {host!r}")
        seen.add(host.lower())
    _gateway_names(f, spec.gateways, "spec.gateways")
    if not spec.http and not spec.tcp and not spec.tls:
        f.error("spec", "at least one of http, tcp or tls routes must be given")
    for i, route in enumerate(spec.http):
        _http_route(f, route, f"spec.http[{i}]", delegate)
        if mesh_bound:
            _no_claim_routing(f, route, f"spec.http[{i}]", spec.gateways)
    for i, tcp in enumerate(spec.tcp):
        path = f"spec.tcp[{i}]"
        for j, m in enumerate(tcp.match):
            _l4_match(f, m.port, m.destination_subnets, m.gateways, f"{path}.match[{j}]")
        if not tcp.route:
            f.error(f"{path}.route", "a TCP route needs at least one destination")
        _route_destinations(f, tcp.route, f"{path}.route")
    for i, tls in enumerate(spec.tls):
        _tls_route(f, tls, spec.hosts, f"spec.tls[{i}]")
    for i, problem in checks.check_export_to(spec.export_to):
        f.error(f"spec.exportTo[{i}]", problem)
    return f.items


def _gateway_names(f: Findings, names: Sequence[str], path: str) -> None:
    for i, name in enumerate(names):
        item = f"{path}[{i}]"
        if name == "mesh":
            continue
        if "/" in name:
            namespace, _, gw = name.partition("/")
            if not namespace or not gw:
                f.error(item, "gateway reference must be <namespace>/<name>")
                continue
            f.add(item, checks.check_dns1123_label(namespace, "gateway namespace"))
            f.add(item, checks.check_dns1123_label(gw, "gateway name"))
        else:
            f.add(item, checks.check_host(name, allow_wildcard=False))


def _string_match(f: Findings, match: StringMatch, path: str, *, allow_empty: bool) -> None:
    if match.kind is None and not allow_empty:
        f.error(path, "one of exact, prefix or regex must be set")
    if match.regex is not None:
        f.add(f"{path}.regex", checks.check_regex(match.regex))


def _no_claim_routing(f: Findings, route: HTTPRoute, path: str, gateways: list[str]) -> None:
    """Istio routes on JWT claims only on gateways (sidecars do not re-route after
    validating a token): a claim key on a mesh-bound VirtualService is an error."""
    for j, m in enumerate(route.match):
        for field, table in (("headers", m.headers), ("withoutHeaders", m.without_headers)):
            for name in table:
                if routing_claim(name) is not None:
                    f.error(
                        f"{path}.match[{j}].{field}.{name}",
                        f"JWT claim based routing (key: {name}) is only supported for "
                        f"gateways, found gateways {gateways or ['mesh']}",
                    )


def _http_match(f: Findings, m: HTTPMatchRequest, path: str) -> None:
    for field, value in (("uri", m.uri), ("scheme", m.scheme), ("method", m.method)):
        if value is not None:
            _string_match(f, value, f"{path}.{field}", allow_empty=False)
    if m.authority is not None:
        _string_match(f, m.authority, f"{path}.authority", allow_empty=False)
    for field, table in (("headers", m.headers), ("withoutHeaders", m.without_headers)):
        for name, value in table.items():
            hpath = f"{path}.{field}.{name}"
            if routing_claim(name) is None:  # ``@request.auth.claims.*``: a JWT claim
                f.add(hpath, checks.check_header_name(name))
            _string_match(f, value, hpath, allow_empty=True)
    for name, value in m.query_params.items():
        _string_match(f, value, f"{path}.queryParams.{name}", allow_empty=True)
    if m.port is not None:
        f.add(f"{path}.port", checks.check_port(m.port))
    for p, problem in checks.label_problems(m.source_labels, f"{path}.sourceLabels"):
        f.error(p, problem)
    _gateway_names(f, m.gateways, f"{path}.gateways")
    if m.source_namespace is not None:
        f.add(
            f"{path}.sourceNamespace", checks.check_dns1123_label(m.source_namespace, "namespace")
        )


def _http_route(f: Findings, r: HTTPRoute, path: str, in_delegate: bool) -> None:
    for j, m in enumerate(r.match):
        _http_match(f, m, f"{path}.match[{j}]")
    actions = [
        name
        for name, present in (
            ("route", bool(r.route)),
            ("redirect", r.redirect is not None),
            ("directResponse", r.direct_response is not None),
            ("delegate", r.delegate is not None),
        )
        if present
    ]
    if not actions:
        f.error(path, "an HTTP route needs one of route, redirect, directResponse or delegate")
    elif len(actions) > 1:
        f.error(f"{path}.{actions[1]}", f"{' and '.join(actions)} are mutually exclusive")
    if r.redirect is not None and r.rewrite is not None:
        f.error(f"{path}.rewrite", "a route cannot have both rewrite and redirect")
    if r.delegate is not None:
        if in_delegate:
            f.error(f"{path}.delegate", "a delegate VirtualService cannot delegate further")
        f.add(f"{path}.delegate.name", checks.check_dns1123_subdomain(r.delegate.name))
        if r.delegate.namespace:
            f.add(
                f"{path}.delegate.namespace",
                checks.check_dns1123_label(r.delegate.namespace, "namespace"),
            )
    _route_destinations(f, r.route, f"{path}.route")
    for j, dest in enumerate(r.route):
        if dest.headers is not None:
            _headers(f, dest.headers, f"{path}.route[{j}].headers")
    if r.redirect is not None:
        rd, rp = r.redirect, f"{path}.redirect"
        if not (rd.uri or rd.authority or rd.port or rd.derive_port or rd.scheme):
            f.error(rp, "a redirect must set uri, authority, scheme or port")
        if rd.redirect_code is not None and not 300 <= rd.redirect_code <= 399:
            f.error(f"{rp}.redirectCode", f"{rd.redirect_code} is not a redirect code (3xx)")
        if rd.scheme is not None and rd.scheme not in ("http", "https"):
            f.error(f"{rp}.scheme", "redirect scheme must be 'http' or 'https'")
        if rd.port is not None:
            f.add(f"{rp}.port", checks.check_port(rd.port))
            if rd.derive_port is not None:
                f.error(f"{rp}.derivePort", "port and derivePort are mutually exclusive")
    if r.direct_response is not None:
        dr, dp = r.direct_response, f"{path}.directResponse"
        if not 200 <= dr.status <= 599:
            f.error(f"{dp}.status", f"HTTP status {dr.status} is not in range 200..599")
        if dr.body is not None and dr.body.string is not None and dr.body.bytes is not None:
            f.error(f"{dp}.body", "only one of string and bytes may be set")
    if r.rewrite is not None:
        rw, wp = r.rewrite, f"{path}.rewrite"
        if rw.uri is not None and rw.uri_regex_rewrite is not None:
            f.error(wp, "only one of uri and uriRegexRewrite may be set")
        if rw.uri is None and rw.uri_regex_rewrite is None and rw.authority is None:
            f.error(wp, "a rewrite must set uri, uriRegexRewrite or authority")
        if rw.uri_regex_rewrite is not None:
            rr = rw.uri_regex_rewrite
            if not rr.match or not rr.rewrite:
                f.error(f"{wp}.uriRegexRewrite", "uriRegexRewrite needs both match and rewrite")
            elif (problem := checks.check_regex(rr.match)) is not None:
                f.error(f"{wp}.uriRegexRewrite.match", problem)
    if r.timeout is not None:
        f.add(f"{path}.timeout", checks.check_duration(r.timeout, minimum_ms=0))
    if r.retries is not None:
        _retries(f, r.retries, f"{path}.retries")
    if r.fault is not None:
        _fault(f, r.fault, f"{path}.fault")
    if r.mirror is not None and r.mirrors:
        f.error(f"{path}.mirrors", "mirror and mirrors are mutually exclusive")
    if r.mirror is not None:
        _destination(f, r.mirror, f"{path}.mirror")
    for j, mirror in enumerate(r.mirrors):
        _destination(f, mirror.destination, f"{path}.mirrors[{j}].destination")
        _percent(f, mirror.percentage, f"{path}.mirrors[{j}].percentage")
    _percent(f, r.mirror_percentage, f"{path}.mirrorPercentage")
    if r.cors_policy is not None:
        cp, cpath = r.cors_policy, f"{path}.corsPolicy"
        for j, origin in enumerate(cp.allow_origins):
            _string_match(f, origin, f"{cpath}.allowOrigins[{j}]", allow_empty=False)
        for j, method in enumerate(cp.allow_methods):
            if method not in CORS_METHODS:
                f.error(f"{cpath}.allowMethods[{j}]", f"{method!r} is not a supported HTTP method")
        for field, names in (
            ("allowHeaders", cp.allow_headers),
            ("exposeHeaders", cp.expose_headers),
        ):
            for j, name in enumerate(names):
                if name != "*":
                    f.add(f"{cpath}.{field}[{j}]", checks.check_header_name(name))
        if cp.max_age is not None:
            f.add(f"{cpath}.maxAge", checks.check_duration(cp.max_age, minimum_ms=0))
    if r.headers is not None:
        _headers(f, r.headers, f"{path}.headers")


def _route_destinations(
    f: Findings, routes: Sequence[HTTPRouteDestination | RouteDestination], path: str
) -> None:
    total = 0
    for j, item in enumerate(routes):
        weight = item.weight
        _destination(f, item.destination, f"{path}[{j}].destination")
        if weight is not None:
            if weight < 0:
                f.error(f"{path}[{j}].weight", f"weight {weight} must not be negative")
            total += max(weight, 0)
    if len(routes) > 1 and total == 0:
        f.error(path, "total destination weight is 0: no destination would receive traffic")


def _destination(f: Findings, d: Destination, path: str) -> None:
    if d.host == "*":
        f.error(f"{path}.host", "'*' is not a valid destination host")
    else:
        f.add(f"{path}.host", checks.check_host(d.host))
    if d.subset is not None:
        f.add(f"{path}.subset", checks.check_dns1123_label(d.subset, "subset name"))
    if d.port is not None and d.port.number is not None:
        f.add(f"{path}.port.number", checks.check_port(d.port.number))


def _headers(f: Findings, h: Headers, path: str) -> None:
    for side, ops in (("request", h.request), ("response", h.response)):
        if ops is None:
            continue
        allow = side == "request"
        for op, names in (("set", list(ops.set)), ("add", list(ops.add))):
            for name in names:
                f.add(
                    f"{path}.{side}.{op}.{name}",
                    checks.check_header_name(name, allow_authority=allow),
                )
        for j, name in enumerate(ops.remove):
            f.add(f"{path}.{side}.remove[{j}]", checks.check_header_name(name))


def _retries(f: Findings, r: HTTPRetry, path: str) -> None:
    attempts = r.attempts or 0
    if attempts < 0:
        f.error(f"{path}.attempts", "attempts must not be negative")
    elif attempts == 0 and (r.per_try_timeout or r.retry_on or r.retry_remote_localities):
        f.error(path, "a retry policy is configured but attempts is 0 (retries disabled)")
    if r.per_try_timeout is not None:
        f.add(f"{path}.perTryTimeout", checks.check_duration(r.per_try_timeout))
    if r.backoff is not None:
        f.add(f"{path}.backoff", checks.check_duration(r.backoff))
    if r.retry_on:
        for policy in (p.strip() for p in r.retry_on.split(",")):
            is_status = policy.isdigit() and 100 <= int(policy) <= 599
            if not is_status and policy not in SUPPORTED_RETRY_ON:
                f.error(f"{path}.retryOn", f"{policy!r} is not a valid retryOn policy")


def _fault(f: Findings, fault: HTTPFaultInjection, path: str) -> None:
    if fault.delay is None and fault.abort is None:
        f.error(path, "fault injection needs an abort and/or a delay")
    if fault.delay is not None:
        d, dp = fault.delay, f"{path}.delay"
        if (d.fixed_delay is None) == (d.exponential_delay is None):
            f.error(dp, "exactly one of fixedDelay and exponentialDelay must be set")
        if d.fixed_delay is not None:
            f.add(f"{dp}.fixedDelay", checks.check_duration(d.fixed_delay))
        if d.exponential_delay is not None:
            f.error(f"{dp}.exponentialDelay", "exponentialDelay is not supported")
        _percent(f, d.percentage, f"{dp}.percentage")
        if d.percent is not None and not 0 <= d.percent <= 100:
            f.error(f"{dp}.percent", f"percent {d.percent} is out of range 0..100")
    if fault.abort is not None:
        a, ap = fault.abort, f"{path}.abort"
        set_types = [x for x in (a.http_status, a.grpc_status, a.http2_error) if x is not None]
        if len(set_types) != 1:
            f.error(ap, "exactly one of httpStatus, grpcStatus and http2Error must be set")
        if a.http_status is not None and not 200 <= a.http_status <= 599:
            f.error(f"{ap}.httpStatus", f"HTTP status {a.http_status} is not in range 200..599")
        if a.http2_error is not None:
            f.error(f"{ap}.http2Error", "HTTP/2 abort fault injection is not supported")
        _percent(f, a.percentage, f"{ap}.percentage")


def _percent(f: Findings, p: Percent | None, path: str) -> None:
    if p is not None:
        f.add(f"{path}.value", checks.check_percent(p.value))


def _l4_match(
    f: Findings, port: int | None, subnets: Sequence[str], gateways: Sequence[str], path: str
) -> None:
    if port is not None:
        f.add(f"{path}.port", checks.check_port(port))
    for k, subnet in enumerate(subnets):
        f.add(f"{path}.destinationSubnets[{k}]", checks.check_cidr_or_ip(subnet))
    _gateway_names(f, gateways, f"{path}.gateways")


def _tls_route(f: Findings, tls: TLSRoute, hosts: Sequence[str], path: str) -> None:
    if not tls.match:
        f.error(f"{path}.match", "a TLS route needs at least one match")
    for j, m in enumerate(tls.match):
        mp = f"{path}.match[{j}]"
        if not m.sni_hosts:
            f.error(f"{mp}.sniHosts", "a TLS match needs at least one SNI host")
        for k, sni in enumerate(m.sni_hosts):
            sp = f"{mp}.sniHosts[{k}]"
            problem = checks.check_host(sni)
            if problem is not None:
                f.error(sp, problem)
            elif hosts and not any(_host_covers(h, sni) for h in hosts):
                f.error(sp, f"SNI host {sni!r} does not match any host of the VirtualService")
        _l4_match(f, m.port, m.destination_subnets, m.gateways, mp)
    if not tls.route:
        f.error(f"{path}.route", "a TLS route needs at least one destination")
    _route_destinations(f, tls.route, f"{path}.route")


def _host_covers(pattern: str, host: str) -> bool:
    """True when either name matches the other, wildcards included (Istio's SNI rule)."""
    p, h = pattern.lower(), host.lower()
    if p == "*" or h == "*" or p == h:
        return True
    if "." not in p:  # a short name: the SNI check needs full names on both sides
        return h.split(".")[0] == p
    if p.startswith("*.") and h.endswith(p[1:]):
        return True
    return h.startswith("*.") and p.endswith(h[1:])
