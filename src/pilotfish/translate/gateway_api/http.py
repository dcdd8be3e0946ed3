"""HTTPRoute rules -> Istio VirtualService HTTP rules, with the spec's precedence key.

Theory of operation: every match of every rule becomes its own VirtualService
rule, so that rules of all routes bound to one listener and hostname can be
sorted by the Gateway API's precedence (``precedence_key``) and emitted in one
VirtualService, which Envoy evaluates in order.

A ``PathPrefix`` match is element-wise (``/foo`` matches ``/foo`` and
``/foo/bar``, never ``/foobar``); Istio's prefix is character-wise, so
``/foo`` becomes two rules: exact ``/foo`` and prefix ``/foo/``. A
ReplacePrefixMatch rewrite or redirect then replaces ``/foo`` with the
replacement on the first and ``/foo/`` with ``<replacement>/`` on the second,
which is what the spec asks of ``/foo`` and ``/foo/bar``.

Derived VirtualServices carry ``ROUTE_SEMANTICS: gateway``; under it the
route translation reads a rewrite or redirect ``uri`` as a whole-path
replacement unless it starts with ``PREFIX_MARK`` (replace the matched prefix
only), and answers 500 for a share whose cluster does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from pilotfish.api.gateway_api.common import gateway_duration_ms
from pilotfish.api.gateway_api.grpc_route import GRPCBackendRef, GRPCRouteFilter, GRPCRouteRule
from pilotfish.api.gateway_api.http_route import (
    HTTPBackendRef,
    HTTPCORSFilter,
    HTTPHeaderFilter,
    HTTPPathModifier,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRetry,
    HTTPRouteRule,
    HTTPRouteTimeouts,
)
from pilotfish.api.networking.common import Percent, StringMatch
from pilotfish.api.networking.virtual_service import (
    CorsPolicy,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPMatchRequest,
    HTTPMirrorPolicy,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRouteDestination,
)
from pilotfish.api.networking.virtual_service import HTTPRoute as VsHttpRoute
from pilotfish.api.resource import Resource
from pilotfish.translate.gateway_api.backends import BackendProblem, resolve_backend
from pilotfish.translate.gateway_api.index import ConfigIndex
from pilotfish.translate.route_semantics import PREFIX_MARK

__all__ = [
    "RuleEntry",
    "header_ops",
    "http_rule_entries",
    "precedence_key",
    "rule_parts",
    "vs_rule",
]

_PATH_RANK: Final = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


@dataclass(frozen=True, slots=True)
class RuleEntry:
    """One VirtualService rule and where it sorts among its host's rules."""

    key: tuple[object, ...]
    rule: VsHttpRoute


def header_ops(f: HTTPHeaderFilter | None) -> HeaderOperations | None:
    if f is None:
        return None
    return HeaderOperations(
        set={h.name: h.value for h in f.set},
        add={h.name: h.value for h in f.add},
        remove=list(f.remove),
    )


def _string(kind: str, value: str) -> StringMatch:
    return StringMatch(regex=value) if kind == "RegularExpression" else StringMatch(exact=value)


def _parts(match: HTTPRouteMatch) -> list[tuple[StringMatch, str]]:
    """(uri match, part) pairs: part is "exact", "prefix" or "" (no split)."""
    path = match.path
    if path.type == "Exact":
        return [(StringMatch(exact=path.value), "")]
    if path.type == "RegularExpression":
        return [(StringMatch(regex=path.value), "")]
    base = path.value.rstrip("/")
    if not base:
        return [(StringMatch(prefix="/"), "")]
    return [(StringMatch(exact=base), "exact"), (StringMatch(prefix=base + "/"), "prefix")]


def _path_value(mod: HTTPPathModifier, part: str) -> str:
    """The uri a rewrite/redirect writes for one part of a split PathPrefix match."""
    if mod.type == "ReplaceFullPath":
        return mod.value
    replacement = mod.value.rstrip("/")
    if part == "exact":
        return replacement or "/"
    return PREFIX_MARK + replacement + "/"


def _vs_match(match: HTTPRouteMatch, uri: StringMatch) -> HTTPMatchRequest:
    return HTTPMatchRequest(
        uri=uri,
        method=StringMatch(exact=match.method) if match.method else None,
        headers={h.name.lower(): _string(h.type, h.value) for h in match.headers},
        query_params={q.name: _string(q.type, q.value) for q in match.query_params},
    )


def precedence_key(
    route: Resource, rule_index: int, match_index: int, match: HTTPRouteMatch
) -> tuple[object, ...]:
    """The spec's order: exact path, longest prefix, method, most headers, most
    query params, then the oldest route, then namespace/name, then rule order."""
    path = match.path
    length = len(path.value.rstrip("/")) if path.type == "PathPrefix" else len(path.value)
    return (
        _PATH_RANK[path.type],
        -length,
        match.method is None,
        -len(match.headers),
        -len(match.query_params),
        route.metadata.creation_timestamp or "~",
        route.namespace,
        route.name,
        rule_index,
        match_index,
    )


def _cors(f: HTTPCORSFilter) -> CorsPolicy:
    # An origin may hold ``*`` wildcards (``https://*.example.com``).
    origins = [
        StringMatch(regex=".*".join(re.escape(part) for part in o.split("*")))
        if "*" in o
        else StringMatch(exact=o)
        for o in f.allow_origins
    ]
    return CorsPolicy(
        allow_origins=origins,
        allow_methods=list(f.allow_methods),
        allow_headers=list(f.allow_headers),
        expose_headers=list(f.expose_headers),
        max_age=f"{f.max_age}s",
        allow_credentials=f.allow_credentials,
        # The filter answers every preflight itself: one from an origin it does not
        # allow gets no CORS headers, and never reaches the backend.
        unmatched_preflights="IGNORE",
    )


@dataclass
class _RuleParts:
    """What a rule's filters and backends become, shared by its matches."""

    headers: Headers | None
    redirect: HTTPRouteFilter | None
    rewrite: HTTPRouteFilter | None
    mirrors: list[HTTPMirrorPolicy]
    cors: CorsPolicy | None
    destinations: list[HTTPRouteDestination]
    fail: bool  # answer 500 (no usable backend, or a filter that cannot be applied)
    timeout: str | None
    retries: HTTPRetry | None


def _backends(
    refs: Sequence[HTTPBackendRef | GRPCBackendRef],
    route: Resource,
    index: ConfigIndex,
    where: str,
) -> tuple[list[HTTPRouteDestination], list[BackendProblem]]:
    out: list[HTTPRouteDestination] = []
    problems: list[BackendProblem] = []
    for i, ref in enumerate(refs):
        dest, problem = resolve_backend(ref, route, index, f"{where}.backendRefs[{i}]")
        if problem is not None:
            problems.append(problem)
        if ref.weight == 0:
            continue
        req = next(
            (f.request_header_modifier for f in ref.filters if f.request_header_modifier), None
        )
        resp = next(
            (f.response_header_modifier for f in ref.filters if f.response_header_modifier), None
        )
        headers = (
            Headers(request=header_ops(req), response=header_ops(resp)) if req or resp else None
        )
        out.append(HTTPRouteDestination(destination=dest, weight=ref.weight, headers=headers))
    return out, problems


#: What a rule's ``retry`` always retries on: connection errors (refused, reset,
#: no answer within ``backendRequest``), as GEP-1731 requires.
RETRY_ON_CONNECTION_ERRORS = "connect-failure,refused-stream,reset"
#: Attempts of a ``retry`` without ``attempts`` (Istio's default).
DEFAULT_RETRY_ATTEMPTS = 2


def _timeouts(rule: object) -> tuple[str | None, HTTPRetry | None]:
    """The route's timeout and retries from the rule's ``timeouts`` and ``retry``.

    Without ``retry``, ``backendRequest`` bounds the whole request when ``request``
    is unset. With it, ``backendRequest`` bounds each attempt and only ``request``
    bounds the whole (retried) request.
    """
    t: HTTPRouteTimeouts | None = getattr(rule, "timeouts", None)
    retry: HTTPRouteRetry | None = getattr(rule, "retry", None)
    request = gateway_duration_ms(t.request) if t and t.request else None
    backend = gateway_duration_ms(t.backend_request) if t and t.backend_request else None
    per_try = f"{backend}ms" if backend else None
    if retry is not None:
        attempts = DEFAULT_RETRY_ATTEMPTS if retry.attempts is None else retry.attempts
        retry_on = ",".join([RETRY_ON_CONNECTION_ERRORS, *map(str, dict.fromkeys(retry.codes))])
        backoff = f"{gateway_duration_ms(retry.backoff)}ms" if retry.backoff else None
        retried = HTTPRetry(
            attempts=attempts, per_try_timeout=per_try, retry_on=retry_on, backoff=backoff
        )
        return (f"{request}ms" if request is not None else None), retried
    timeout = request if request is not None else backend
    retries = HTTPRetry(attempts=2, per_try_timeout=per_try) if backend else None
    return (f"{timeout}ms" if timeout is not None else None), retries


#: backendRef filters that act on the whole request, not on one backend's share.
_REQUEST_WIDE = ("RequestRedirect", "URLRewrite")


def _hoist_backend_filters(
    refs: Sequence[HTTPBackendRef | GRPCBackendRef],
    by_type: dict[str, HTTPRouteFilter | GRPCRouteFilter],
) -> bool:
    """Apply a lone backendRef's RequestRedirect or URLRewrite as the rule's (Envoy
    redirects and rewrites per route, not per weighted cluster); True (answer 500)
    when several backendRefs carry one, which no single route can honour."""
    wide = [f for ref in refs for f in ref.filters if f.type in _REQUEST_WIDE]
    if not wide:
        return False
    if len(refs) > 1:
        return True
    for f in wide:
        by_type.setdefault(f.type, f)
    return False


def rule_parts(
    rule: HTTPRouteRule | GRPCRouteRule, route: Resource, index: ConfigIndex, where: str
) -> tuple[_RuleParts, list[BackendProblem]]:
    by_type: dict[str, HTTPRouteFilter | GRPCRouteFilter] = {}
    mirrors: list[HTTPMirrorPolicy] = []
    fail = False
    for f in rule.filters:
        by_type.setdefault(f.type, f)
        if f.request_mirror is not None:
            dest, problem = resolve_backend(f.request_mirror.backend_ref, route, index, where)
            if problem is None:
                mirrors.append(
                    HTTPMirrorPolicy(
                        destination=dest, percentage=Percent(value=f.request_mirror.share)
                    )
                )
        if f.type == "ExtensionRef":
            fail = True  # the spec: an unresolvable custom filter must fail the request
    req = (
        header_ops(by_type["RequestHeaderModifier"].request_header_modifier)
        if "RequestHeaderModifier" in by_type
        else None
    )
    resp = (
        header_ops(by_type["ResponseHeaderModifier"].response_header_modifier)
        if "ResponseHeaderModifier" in by_type
        else None
    )
    destinations, problems = _backends(rule.backend_refs, route, index, where)
    fail = _hoist_backend_filters(rule.backend_refs, by_type) or fail
    redirect, rewrite, cors_filter = (
        f if isinstance(f, HTTPRouteFilter) else None
        for f in (by_type.get("RequestRedirect"), by_type.get("URLRewrite"), by_type.get("CORS"))
    )
    if redirect is None and not destinations:
        fail = True
    timeout, retries = _timeouts(rule)
    parts = _RuleParts(
        headers=Headers(request=req, response=resp) if req or resp else None,
        redirect=redirect,
        rewrite=rewrite,
        mirrors=mirrors,
        cors=_cors(cors_filter.cors) if cors_filter and cors_filter.cors else None,
        destinations=destinations,
        fail=fail,
        timeout=timeout,
        retries=retries,
    )
    return parts, problems


def _redirect(f: HTTPRouteFilter, part: str) -> HTTPRedirect:
    r = f.request_redirect
    assert r is not None
    # The spec: without a port, a redirect that sets the scheme uses the scheme's
    # well-known port (Envoy's default), one that does not uses the listener's.
    derive: Literal["FROM_REQUEST_PORT"] | None = (
        None if r.port is not None or r.scheme else "FROM_REQUEST_PORT"
    )
    return HTTPRedirect(
        uri=_path_value(r.path, part) if r.path else None,
        authority=r.hostname,
        port=r.port,
        derive_port=derive,
        scheme=r.scheme,
        redirect_code=r.status_code,
    )


def _rewrite(f: HTTPRouteFilter, part: str) -> HTTPRewrite | None:
    r = f.url_rewrite
    assert r is not None
    uri = _path_value(r.path, part) if r.path else None
    if uri is None and r.hostname is None:
        return None
    return HTTPRewrite(uri=uri, authority=r.hostname)


def vs_rule(name: str, match: HTTPMatchRequest, parts: _RuleParts, part: str) -> VsHttpRoute:
    if parts.redirect is not None:
        return VsHttpRoute(
            name=name,
            match=[match],
            redirect=_redirect(parts.redirect, part),
            headers=parts.headers,
        )
    if parts.fail:
        return VsHttpRoute(
            name=name,
            match=[match],
            direct_response=HTTPDirectResponse(status=500),
            headers=parts.headers,
        )
    return VsHttpRoute(
        name=name,
        match=[match],
        route=parts.destinations,
        rewrite=_rewrite(parts.rewrite, part) if parts.rewrite else None,
        timeout=parts.timeout,
        retries=parts.retries,
        mirrors=parts.mirrors,
        cors_policy=parts.cors,
        headers=parts.headers,
    )


def http_rule_entries(
    route: Resource, rules: Sequence[HTTPRouteRule], index: ConfigIndex
) -> tuple[list[RuleEntry], list[BackendProblem]]:
    """Every VirtualService rule of one HTTPRoute, with its precedence key."""
    entries: list[RuleEntry] = []
    problems: list[BackendProblem] = []
    for ri, rule in enumerate(rules):
        where = f"spec.rules[{ri}]"
        parts, found = rule_parts(rule, route, index, where)
        problems.extend(found)
        label = rule.name or str(ri)
        for mi, match in enumerate(rule.matches):
            key = precedence_key(route, ri, mi, match)
            for pi, (uri, part) in enumerate(_parts(match)):
                name = f"{route.namespace}.{route.name}.{label}.{mi}" + (f".{part}" if part else "")
                entries.append(
                    RuleEntry((*key, pi), vs_rule(name, _vs_match(match, uri), parts, part))
                )
    return entries, problems
