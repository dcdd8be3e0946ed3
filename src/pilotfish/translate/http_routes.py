"""VirtualService HTTP rules -> IR routes.

Theory of operation: each ``HTTPRoute`` becomes one Envoy route per ``match``
block (several blocks are OR-ed; Envoy evaluates routes in order, so the
first matching rule wins, as in Istio). Rules whose match blocks are all
restricted to another port or gateway are left out of this route
configuration. Destinations resolve short host names relative to the
VirtualService's namespace; a destination without a port uses the port of the
route configuration being built when the service has it, else the service's
only port. Consistent-hash settings of the destination's DestinationRule add
hash policies to the route, because Envoy hashes at the route.

VirtualServices derived from Gateway API routes carry the annotation
``internal.pilotfish.io/route-semantics: gateway`` (as Istio marks its own):
under it a rewrite or redirect ``uri`` replaces the whole path unless it
starts with ``%PREFIX()%`` (then only the matched prefix), and a share of
traffic whose cluster does not exist is answered with 500 instead of 503,
as the Gateway API requires for invalid backends.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from pilotfish.api.duration import parse_duration_ms
from pilotfish.api.networking.common import Destination, StringMatch
from pilotfish.api.networking.virtual_service import (
    HeaderOperations,
    Headers,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
)
from pilotfish.api.resource import Resource
from pilotfish.ir import (
    ClaimMatch,
    DirectResponseAction,
    ForwardAction,
    HashPolicy,
    HeaderMatch,
    HeaderOps,
    QueryParamMatch,
    RedirectAction,
    RetryPolicy,
    Route,
    RouteAction,
    RouteMatch,
    WeightedCluster,
)
from pilotfish.ir import StringMatch as IrStringMatch
from pilotfish.model.hosts import fqdn
from pilotfish.model.jwt_claims import routing_claim
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.names import outbound_cluster
from pilotfish.translate.policies import effective_policy, find_destination_rule
from pilotfish.translate.route_extras import cors_policy, fault_policy, mirrors
from pilotfish.translate.route_semantics import PREFIX_MARK, gateway_semantics
from pilotfish.translate.source_match import source_matches

__all__ = ["DEFAULT_RETRY", "RouteContext", "default_route", "http_routes"]


def _uri_rewrite(uri: str, gateway: bool, prefix_match: bool) -> tuple[str | None, str | None]:
    """(prefix rewrite, whole-path rewrite) of a rewrite ``uri``."""
    if gateway:
        if uri.startswith(PREFIX_MARK):
            return uri[len(PREFIX_MARK) :], None
        return None, uri
    # A prefix match (or none) rewrites the matched prefix; exact and
    # regex matches replace the whole path, as Istio does.
    return (uri, None) if prefix_match else (None, uri)


# Istio's mesh-wide default retry policy.
DEFAULT_RETRY = RetryPolicy(
    attempts=2,
    retry_on="connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    retriable_status_codes=(503,),
)
_DEFAULT_RETRY_ON = DEFAULT_RETRY.retry_on


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What route translation needs besides the rule itself."""

    snapshot: Snapshot
    proxy_namespace: str
    port: int  # the port this route configuration serves
    gateway: str | None = None  # "ns/name" when building for a gateway, None for sidecars
    # The client proxy's labels, for ``sourceLabels`` matches (see translate.source_match).
    proxy_labels: tuple[tuple[str, str], ...] = ()


def _ir_string(m: StringMatch, ignore_case: bool = False) -> IrStringMatch | None:
    if m.exact is not None:
        return IrStringMatch("exact", m.exact, ignore_case)
    if m.prefix is not None:
        return IrStringMatch("prefix", m.prefix, ignore_case)
    if m.regex is not None:
        return IrStringMatch("regex", m.regex, ignore_case)
    return None


def _header_ops(ops: HeaderOperations | None) -> HeaderOps:
    if ops is None:
        return HeaderOps()
    return HeaderOps(
        set=tuple(sorted(ops.set.items())),
        add=tuple(sorted(ops.add.items())),
        remove=tuple(ops.remove),
    )


def _headers(h: Headers | None) -> tuple[HeaderOps, HeaderOps]:
    if h is None:
        return HeaderOps(), HeaderOps()
    return _header_ops(h.request), _header_ops(h.response)


def _normalize_gateway(name: str, vs_namespace: str) -> str:
    return name if name == "mesh" or "/" in name else f"{vs_namespace}/{name}"


def _match_applies(m: HTTPMatchRequest, ctx: RouteContext, vs_namespace: str) -> bool:
    if m.port is not None and m.port != ctx.port:
        return False
    if (m.source_labels or m.source_namespace) and not source_matches(
        m.source_labels, m.source_namespace, dict(ctx.proxy_labels), ctx.proxy_namespace
    ):
        return False
    if m.gateways:
        wanted = {_normalize_gateway(g, vs_namespace) for g in m.gateways}
        return (ctx.gateway or "mesh") in wanted
    return True


def _route_match(m: HTTPMatchRequest | None) -> RouteMatch:
    if m is None:
        return RouteMatch()
    path = IrStringMatch("prefix", "/", False)
    if m.uri is not None:
        path = _ir_string(m.uri, m.ignore_uri_case) or path
    headers: list[HeaderMatch] = []
    for pseudo, sm in ((":authority", m.authority), (":method", m.method), (":scheme", m.scheme)):
        if sm is not None:
            headers.append(HeaderMatch(pseudo, _ir_string(sm)))
    claims: list[ClaimMatch] = []
    for table, invert in ((m.headers, False), (m.without_headers, True)):
        for name, sm in sorted(table.items()):
            # ``@request.auth.claims.*`` keys match the verified JWT's payload, as Istio.
            claim = routing_claim(name)
            if claim is not None:
                claims.append(ClaimMatch(claim, _ir_string(sm), invert))
            else:
                headers.append(HeaderMatch(name.lower(), _ir_string(sm), invert))
    params = tuple(
        QueryParamMatch(name, _ir_string(sm)) for name, sm in sorted(m.query_params.items())
    )
    return RouteMatch(path=path, headers=tuple(headers), query_params=params, claims=tuple(claims))


def _retry(r: HTTPRetry | None, snapshot: Snapshot) -> RetryPolicy | None:
    """The route's retry policy: its own ``retries``, else the mesh config's
    ``defaultHttpRetryPolicy``, else Istio's built-in default (``DEFAULT_RETRY``)."""
    if r is None:
        r = snapshot.default_http_retry
    if r is None:
        return DEFAULT_RETRY
    # As in Istio: a retries block without a positive ``attempts`` disables retries.
    attempts = r.attempts or 0
    if attempts <= 0:
        return None
    per_try = parse_duration_ms(r.per_try_timeout) if r.per_try_timeout else None
    backoff = parse_duration_ms(r.backoff) if r.backoff else None
    remote = bool(r.retry_remote_localities)
    if not r.retry_on:
        return RetryPolicy(attempts, _DEFAULT_RETRY_ON, per_try, (503,), backoff, remote)
    conditions: list[str] = []
    codes: list[int] = []
    for item in (x.strip() for x in r.retry_on.split(",")):
        if not item:
            continue
        if item.isdigit():
            codes.append(int(item))
        elif item not in conditions:
            conditions.append(item)
    if codes and "retriable-status-codes" not in conditions:
        conditions.append("retriable-status-codes")
    return RetryPolicy(attempts, ",".join(conditions), per_try, tuple(codes), backoff, remote)


def _destination_port(dest: Destination, hostname: str, ctx: RouteContext) -> int:
    if dest.port is not None and dest.port.number:
        return dest.port.number
    svc = ctx.snapshot.registry.service(hostname)
    if svc is not None:
        if svc.port(ctx.port) is not None:
            return ctx.port
        if len(svc.ports) >= 1:
            return svc.ports[0].port
    return ctx.port


def _hash_policies(
    hostname: str, port: int, subset: str, ctx: RouteContext
) -> tuple[HashPolicy, ...]:
    svc = ctx.snapshot.registry.service(hostname)
    rule = find_destination_rule(
        ctx.snapshot, hostname, ctx.proxy_namespace, svc.namespace if svc else ""
    )
    lb = effective_policy(rule, port, subset).load_balancer
    if lb is None or lb.consistent_hash is None:
        return ()
    ch = lb.consistent_hash
    if ch.http_header_name:
        return (HashPolicy(header=ch.http_header_name.lower()),)
    if ch.http_cookie is not None:
        ttl = parse_duration_ms(ch.http_cookie.ttl) if ch.http_cookie.ttl else None
        return (
            HashPolicy(
                cookie_name=ch.http_cookie.name, cookie_ttl_ms=ttl, cookie_path=ch.http_cookie.path
            ),
        )
    if ch.use_source_ip:
        return (HashPolicy(source_ip=True),)
    if ch.http_query_parameter_name:
        return (HashPolicy(query_param=ch.http_query_parameter_name),)
    return ()


def _forward(
    rule: HTTPRoute, match: HTTPMatchRequest | None, vs: Resource, ctx: RouteContext
) -> ForwardAction:
    suffix = ctx.snapshot.domain_suffix
    clusters: list[WeightedCluster] = []
    hashes: tuple[HashPolicy, ...] = ()
    positive = [d for d in rule.route if (d.weight is None or d.weight > 0)] or list(rule.route)
    for i, d in enumerate(positive):
        hostname = fqdn(d.destination.host, vs.namespace, suffix)
        port = _destination_port(d.destination, hostname, ctx)
        subset = d.destination.subset or ""
        weight = d.weight if d.weight is not None else (100 if len(positive) == 1 else 0)
        req, resp = _headers(d.headers)
        clusters.append(
            WeightedCluster(outbound_cluster(hostname, port, subset), max(weight, 0), req, resp)
        )
        if i == 0:
            hashes = _hash_policies(hostname, port, subset, ctx)
    if len(clusters) > 1 and all(c.weight == 0 for c in clusters):
        clusters = [
            WeightedCluster(c.cluster, 1, c.request_headers, c.response_headers) for c in clusters
        ]
    prefix_rewrite = path_rewrite = host_rewrite = None
    if rule.rewrite is not None:
        host_rewrite = rule.rewrite.authority
        if rule.rewrite.uri is not None:
            prefix_match = match is None or match.uri is None or match.uri.prefix is not None
            prefix_rewrite, path_rewrite = _uri_rewrite(
                rule.rewrite.uri, gateway_semantics(vs), prefix_match
            )
    timeout = parse_duration_ms(rule.timeout) if rule.timeout else 0

    def mirror_cluster(dest: Destination, owner: Resource) -> str:
        hostname = fqdn(dest.host, owner.namespace, suffix)
        return outbound_cluster(hostname, _destination_port(dest, hostname, ctx), dest.subset or "")

    return ForwardAction(
        clusters=tuple(clusters),
        timeout_ms=timeout,
        retry=_retry(rule.retries, ctx.snapshot),
        prefix_rewrite=prefix_rewrite,
        path_rewrite=path_rewrite,
        host_rewrite=host_rewrite,
        hash_policies=hashes,
        mirrors=mirrors(rule, vs, mirror_cluster),
        missing_cluster_status=500 if gateway_semantics(vs) else None,
    )


def _redirect_port(
    port: int | None, derive: str | None, scheme: str | None, listener_port: int, gateway: bool
) -> int | None:
    """The redirect's port, as Istio sets it: ``FROM_REQUEST_PORT`` is the port of
    the route configuration being built (Envoy cannot derive it per request);
    under Gateway API semantics the scheme's well-known port is left implicit."""
    if derive == "FROM_REQUEST_PORT":
        port = listener_port
    if gateway and (port, scheme or "http") in ((80, "http"), (443, "https")):
        return None
    return port


def _action(
    rule: HTTPRoute, match: HTTPMatchRequest | None, vs: Resource, ctx: RouteContext
) -> RouteAction:
    if rule.direct_response is not None:
        body = None
        if rule.direct_response.body is not None:
            b = rule.direct_response.body
            if b.string is not None:
                body = b.string
            elif b.bytes is not None:
                body = base64.b64decode(b.bytes).decode("utf-8", "replace")
        return DirectResponseAction(rule.direct_response.status, body)
    if rule.redirect is not None:
        r = rule.redirect
        # Istio replaces the whole path whatever the match type.
        prefix = None
        path = r.uri
        if path is not None and gateway_semantics(vs) and path.startswith(PREFIX_MARK):
            prefix, path = path[len(PREFIX_MARK) :], None
        return RedirectAction(
            path=path,
            prefix=prefix,
            host=r.authority,
            port=_redirect_port(r.port, r.derive_port, r.scheme, ctx.port, gateway_semantics(vs)),
            scheme=r.scheme,
            response_code=r.redirect_code or 301,
        )
    return _forward(rule, match, vs, ctx)


def http_routes(vs: Resource, ctx: RouteContext) -> list[Route]:
    """The IR routes of one VirtualService for one route configuration, in order."""
    rules: Sequence[HTTPRoute] = getattr(vs.spec, "http", ())
    routes: list[Route] = []
    for index, rule in enumerate(rules):
        if not rule.route and rule.redirect is None and rule.direct_response is None:
            continue  # delegate-only rules are not supported yet
        req, resp = _headers(rule.headers)
        label = rule.name or str(index)
        where = f"{vs.namespace}/{vs.name}/{label}"
        fault = fault_policy(rule.fault, where)
        cors = cors_policy(rule.cors_policy)
        matches: list[HTTPMatchRequest | None] = list(rule.match) or [None]
        for mi, m in enumerate(matches):
            if m is not None and not _match_applies(m, ctx, vs.namespace):
                continue
            name = f"{vs.namespace}/{vs.name}/{label}" + (f"/{mi}" if len(matches) > 1 else "")
            routes.append(
                Route(
                    name=name,
                    match=_route_match(m),
                    action=_action(rule, m, vs, ctx),
                    request_headers=req,
                    response_headers=resp,
                    fault=fault,
                    cors=cors,
                )
            )
    return routes


def default_route(hostname: str, port: int, ctx: RouteContext) -> Route:
    """The route for a service no VirtualService covers: all paths to its cluster."""
    return Route(
        name="default",
        match=RouteMatch(),
        action=ForwardAction(
            clusters=(WeightedCluster(outbound_cluster(hostname, port), 100),),
            timeout_ms=0,
            retry=_retry(None, ctx.snapshot),
            hash_policies=_hash_policies(hostname, port, "", ctx),
        ),
    )
