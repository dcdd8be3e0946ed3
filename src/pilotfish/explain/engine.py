"""``explain``: walk one request through the IR the control plane generated.

Theory of operation. The caller's proxy configuration is
``translate.compose.compose(snapshot, view)``, the very function the control
plane's generator is built from, so the walk reads exactly what Envoy was
sent and never re-derives routing from the Istio resources. The walk follows
Envoy's own order: outbound listener (``listeners``), filter chain, HTTP
connection manager and its route configuration, virtual host and route
(``routing``), the route's action (weights, retries, timeout, fault), the
destination cluster and its endpoints (``upstream``), the transport (mesh
mTLS or not), and then the destination workload's *inbound* configuration,
composed the same way for its view: inbound listener and chain, the JWT
filter (``jwt``) and RBAC (``authz``), with the caller's SPIFFE identity as
principal when the hop is mesh mTLS.

Which proxy serves an endpoint is the caller's business (``PeerFinder``):
the control plane knows the views of connected proxies; offline, a view is
inferred from the registry instance behind the endpoint (and marked so).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from pilotfish import ir
from pilotfish.explain import authz, jwt, listeners, routing, upstream
from pilotfish.explain.match import string_match
from pilotfish.explain.request import ExplainRequest
from pilotfish.explain.steps import Explanation
from pilotfish.model.hosts import short_names
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import Instance
from pilotfish.translate.compose import compose

__all__ = ["Peer", "PeerFinder", "explain", "registry_peer"]


@dataclass(frozen=True)
class Peer:
    """The proxy in front of an endpoint: its name and view; ``inferred`` when the
    view was derived from the registry, not read from a connected proxy."""

    name: str
    view: ProxyView
    inferred: bool = False


# (snapshot, cluster, endpoint, caller's view) -> the peer, or None: no sidecar.
PeerFinder = Callable[[Snapshot, ir.Cluster, ir.Endpoint, ProxyView], Peer | None]


def _instance(snapshot: Snapshot, cluster: ir.Cluster, ep: ir.Endpoint) -> Instance | None:
    for inst in snapshot.registry.instances_of(cluster.service, cluster.port):
        if inst.address == ep.address and inst.port == ep.port:
            return inst
    return None


def registry_peer(
    snapshot: Snapshot, cluster: ir.Cluster, ep: ir.Endpoint, caller: ProxyView
) -> Peer | None:
    """A view for the endpoint's workload from its registry instance, assuming it has a
    sidecar laid out like the caller's (offline explanations)."""
    inst = _instance(snapshot, cluster, ep)
    svc = snapshot.registry.services.get(cluster.service)
    if inst is None or svc is None:
        return None
    view = ProxyView(
        "sidecar",
        svc.namespace,
        labels=inst.labels,
        service_account=inst.service_account or "default",
        interception=caller.interception,
        bind_ip="0.0.0.0" if caller.interception == "REDIRECT" else ep.address,
        # A sidecar marked as accepting mesh mTLS has a mesh certificate.
        workload_certs=caller.workload_certs or ep.tls_mode == "istio",
    )
    return Peer(f"{ep.address} ({svc.namespace}, {dict(inst.labels)})", view, inferred=True)


def _resolve(snapshot: Snapshot, host: str, namespace: str) -> tuple[str, str]:
    """(IP, how) for the URL's host as the caller's DNS would answer (registry VIPs)."""
    try:
        ipaddress.ip_address(host)
        return host, "the URL names an address"
    except ValueError:
        pass
    for svc in snapshot.registry.services.values():
        names = short_names(svc.hostname, namespace, snapshot.domain_suffix)
        if host in names or host == svc.hostname:
            if svc.addresses:
                return svc.addresses[
                    0
                ], f"{host} is service {svc.hostname}, address {svc.addresses[0]}"
            return "", f"{host} is service {svc.hostname}, which has no address"
    return "", f"{host} is not a mesh service: its address comes from DNS, unknown here"


def _http_route_config(
    config: ir.ProxyConfig, hcm: ir.HttpConnectionManager
) -> ir.RouteConfig | None:
    if hcm.inline_routes is not None:
        return hcm.inline_routes
    return next((r for r in config.route_configs if r.name == hcm.route_config_name), None)


def _entry(
    config: ir.ProxyConfig,
    view: ProxyView,
    req: ExplainRequest,
    snapshot: Snapshot,
    out: Explanation,
) -> tuple[ir.Listener | None, listeners.Connection]:
    """The listener the caller's connection lands on, and the connection as it sees it."""
    tls = "tls" if req.scheme == "https" else "raw_buffer"
    sni = req.host if tls == "tls" else ""
    if view.role == "gateway":
        # A Gateway server port may be published on another host port (app_ports).
        ports = {req.port, view.app_port(req.port)}
        lst = next((x for x in config.listeners if x.port in ports and x.bind_to_port), None)
        why = (
            f"the gateway listener {lst.name} serves port {lst.port}"
            if lst
            else f"the gateway has no listener on port {req.port}"
        )
        out.add("listener", lst.name if lst else "none", [why])
        return lst, listeners.Connection(req.host, lst.port if lst else req.port, tls, sni)
    if view.interception == "NONE":
        lst = listeners.find_bound_listener(
            config.listeners, view.bind_ip, view.outbound_port, "outbound"
        )
        why = (
            f"the app sends the request to the sidecar's HTTP proxy listener "
            f"{view.bind_ip}:{view.outbound_port}; the Host header carries the destination"
        )
        out.add(
            "listener",
            lst.name if lst else "none",
            [why if lst else f"no outbound listener on {view.bind_ip}:{view.outbound_port}"],
        )
        return lst, listeners.Connection(view.bind_ip, view.outbound_port, "raw_buffer")
    ip, how = _resolve(snapshot, req.host, view.namespace)
    capture = next(
        (x for x in config.listeners if x.use_original_dst and x.direction == "outbound"), None
    )
    reasons = [
        how,
        f"iptables redirects the connection to {capture.name if capture else 'port 15001'} "
        f"(original destination {ip or '?'}:{req.port})",
    ]
    lst, why = listeners.handoff_listener(config.listeners, ip, req.port)
    reasons.append(why)
    lst = lst or capture
    out.add("listener", lst.name if lst else "none", reasons)
    return lst, listeners.Connection(ip, req.port, tls, sni)


def explain(
    snapshot: Snapshot,
    view: ProxyView,
    request: ExplainRequest,
    *,
    source: str = "",
    find_peer: PeerFinder = registry_peer,
) -> Explanation:
    """Explain ``request`` sent by the workload behind the proxy with ``view``."""
    out = Explanation(source or f"{view.role} in {view.namespace}", request.to_json())
    config = compose(snapshot, view)
    out.add(
        "source",
        source or view.namespace,
        [
            f"{view.role} proxy in namespace {view.namespace}, labels {dict(view.labels)}, "
            f"interception {view.interception}, "
            f"mesh certificate {'yes' if view.workload_certs else 'no'}"
        ],
    )
    lst, conn = _entry(config, view, request, snapshot, out)
    if lst is None:
        out.outcome.notes.append("the connection is refused: no listener")
        return out
    chain, reasons = listeners.select_chain(lst, conn)
    out.add("filter chain", chain.name if chain else "none", reasons)
    if chain is None:
        out.outcome.notes.append("the connection is closed: no filter chain")
        return out
    if isinstance(chain.filter, ir.TcpProxy):
        _tcp(snapshot, config, view, chain.filter, request, out, find_peer)
        return out
    _http(snapshot, config, view, chain.filter, request, out, find_peer)
    return out


def _tcp(
    snapshot: Snapshot,
    config: ir.ProxyConfig,
    view: ProxyView,
    proxy: ir.TcpProxy,
    request: ExplainRequest,
    out: Explanation,
    find_peer: PeerFinder,
) -> None:
    """An L4 chain: the connection goes to the weighted clusters, whose destination
    decides it once with its TCP authorization (HTTP fields never apply)."""
    weighted = dict(proxy.weighted_clusters) or {proxy.cluster: 100}
    out.add(
        "tcp proxy",
        proxy.cluster if len(weighted) == 1 else "weighted",
        [
            "the chain proxies the connection's bytes (no HTTP routing)",
            *(f"cluster {c} weight {w}" for c, w in weighted.items()),
        ],
    )
    out.outcome.clusters = weighted
    live = [c for c, w in weighted.items() if w > 0]
    if len(live) == 1:
        out.outcome.cluster = live[0]
    for name in live:
        _cluster(snapshot, config, view, name, request, out, find_peer)


def _http(
    snapshot: Snapshot,
    config: ir.ProxyConfig,
    view: ProxyView,
    hcm: ir.HttpConnectionManager,
    request: ExplainRequest,
    out: Explanation,
    find_peer: PeerFinder,
) -> None:
    rc = _http_route_config(config, hcm)
    out.add(
        "http connection manager",
        hcm.stat_prefix,
        [
            "routes from "
            + ("inline routes" if hcm.inline_routes else f"RDS {hcm.route_config_name!r}"),
            f"HTTP filters: {', '.join(hcm.http_filters) or 'router only'}",
        ],
    )
    if rc is None:
        out.outcome.status = 404
        out.add(
            "route config",
            "missing",
            [f"route configuration {hcm.route_config_name!r} was not sent: Envoy answers 404"],
        )
        return
    vh, _domain, reasons = routing.select_virtual_host(rc, request.authority)
    out.add("virtual host", vh.name if vh else "none", reasons, route_config=rc.name)
    if vh is None:
        out.outcome.status = 404
        return
    if vh.require_tls and request.scheme == "http":
        out.outcome.status = 301
        out.add(
            "route",
            "https redirect",
            ["the virtual host requires TLS: Envoy redirects to https (301)"],
        )
        return
    route, reasons = routing.match_route(vh.routes, request)
    out.add("route", route.name if route else "none", reasons)
    if route is None:
        out.outcome.status = 404
        return
    _action(snapshot, config, view, route, request, out, find_peer)


def _action(
    snapshot: Snapshot,
    config: ir.ProxyConfig,
    view: ProxyView,
    route: ir.Route,
    request: ExplainRequest,
    out: Explanation,
    find_peer: PeerFinder,
) -> None:
    action = route.action
    if isinstance(action, ir.RedirectAction):
        out.outcome.status = action.response_code
        path = action.path or action.prefix or request.path
        target = f"{action.scheme or request.scheme}://{action.host or request.host}{path}"
        out.add("action", "redirect", [f"Envoy answers {action.response_code} to {target}"])
        return
    if isinstance(action, ir.DirectResponseAction):
        out.outcome.status = action.status
        out.add("action", "direct response", [f"Envoy answers {action.status} itself"])
        return
    total = sum(wc.weight for wc in action.clusters) or 1
    weights = {wc.cluster: wc.weight for wc in action.clusters}
    reasons = [
        f"cluster {wc.cluster}: weight {wc.weight} ({100 * wc.weight / total:.0f} % of requests)"
        for wc in action.clusters
    ]
    if action.timeout_ms is not None:
        reasons.append(
            "timeout: none" if action.timeout_ms == 0 else f"timeout: {action.timeout_ms} ms"
        )
    if action.retry is not None:
        r = action.retry
        reasons.append(
            f"retries: {r.attempts} on {r.retry_on}"
            + (f", {r.per_try_timeout_ms} ms per try" if r.per_try_timeout_ms else "")
        )
    else:
        reasons.append("retries: none")
    if action.prefix_rewrite is not None or action.path_rewrite is not None:
        reasons.append(f"path rewritten to {action.path_rewrite or action.prefix_rewrite!r}")
    if action.host_rewrite:
        reasons.append(f"Host rewritten to {action.host_rewrite}")
    reasons += [f"mirrored to {m.cluster} ({m.percent:g} %)" for m in action.mirrors]
    out.add("action", "forward", reasons, timeout_ms=action.timeout_ms)
    out.outcome.clusters = weights
    # Istio's filter order: fault, then CORS, then the router.
    if route.fault is not None and _fault(route.fault, out):
        return
    if route.cors is not None and _cors(route.cors, request, out):
        return
    live = [c for c, w in weights.items() if w > 0]
    if len(live) == 1:
        out.outcome.cluster = live[0]
    for name in live:
        _cluster(
            snapshot,
            config,
            view,
            name,
            request,
            out,
            find_peer,
            missing_status=action.missing_cluster_status or 503,
        )


def _fault(fault: ir.FaultPolicy, out: Explanation) -> bool:
    """Add the fault step; True when every request is aborted here."""
    reasons = []
    if fault.delay_percent:
        reasons.append(f"{fault.delay_percent:g} % of requests delayed {fault.delay_ms} ms")
    if fault.abort_percent:
        status = fault.abort_http_status or f"gRPC {fault.abort_grpc_status}"
        reasons.append(f"{fault.abort_percent:g} % of requests aborted with {status}")
    out.add("fault", "injected", reasons)
    if fault.abort_percent is not None and fault.abort_percent >= 100 and fault.abort_http_status:
        out.outcome.status = fault.abort_http_status
        return True
    if fault.abort_percent:
        out.outcome.notes.append("some requests are aborted by fault injection (random)")
    return False


def _cors(cors: ir.CorsPolicy, request: ExplainRequest, out: Explanation) -> bool:
    """Add the CORS step; True when the filter answers a preflight itself."""
    origin = request.header("origin")
    preflight = (
        request.method == "OPTIONS"
        and origin is not None
        and request.header("access-control-request-method") is not None
    )
    allowed = origin is not None and any(string_match(m, origin) for m in cors.allow_origins)
    if not preflight:
        why = (
            "the response gets CORS headers"
            if allowed
            else "the origin is not allowed: no CORS headers"
        )
        out.add(
            "cors", "simple request", [why if origin else "no Origin header: CORS does not apply"]
        )
        return False
    if allowed:
        out.add("cors", "preflight answered", [f"origin {origin} is allowed: Envoy answers 200"])
        out.outcome.status = 200
        return True
    forwarded = cors.forward_unmatched_preflights
    why = "forwarded upstream" if forwarded else "answered without CORS headers"
    out.add("cors", "preflight not allowed", [f"origin {origin} is not allowed: {why}"])
    return False


def _cluster(
    snapshot: Snapshot,
    config: ir.ProxyConfig,
    view: ProxyView,
    name: str,
    request: ExplainRequest,
    out: Explanation,
    find_peer: PeerFinder,
    missing_status: int = 503,
) -> None:
    cluster = upstream.find_cluster(config, name)
    if cluster is None:
        reason = f"the proxy has no such cluster: Envoy answers {missing_status}"
        out.add("cluster", name, [reason])
        out.outcome.status = missing_status
        return
    endpoints = upstream.cluster_endpoints(config, cluster)
    eps = [f"{e.address}:{e.port}" + (f" ({e.locality})" if e.locality else "") for e in endpoints]
    reasons = [
        f"{cluster.discovery} cluster, {cluster.lb_policy} load balancing",
        f"service {cluster.service or '-'} port {cluster.port or '-'} "
        f"subset {cluster.subset or '(all)'}",
    ]
    reasons.append(
        f"endpoints: {', '.join(eps)}"
        if eps
        else "no endpoints: Envoy answers 503 (no healthy upstream)"
    )
    out.add("cluster", name, reasons, endpoints=eps)
    if name == "BlackHoleCluster":
        out.outcome.status = 502
        return
    if not endpoints:
        if cluster.discovery != "ORIGINAL_DST":
            out.outcome.status = 503
        return
    ep = endpoints[0]
    mode, why = upstream.endpoint_tls(cluster, ep)
    out.add("transport", mode, [why])
    peer = find_peer(snapshot, cluster, ep, view)
    if peer is None:
        out.add(
            "destination",
            f"{ep.address}:{ep.port}",
            [
                "no sidecar serves this endpoint: the request reaches the app directly, "
                "no authorization is enforced"
            ],
        )
        return
    principal = (
        f"{snapshot.trust_domain}/ns/{view.namespace}/sa/{view.service_account}"
        if mode == "ISTIO_MUTUAL"
        else ""
    )
    _destination(snapshot, peer, ep, mode, principal, request, out)


def _destination(
    snapshot: Snapshot,
    peer: Peer,
    ep: ir.Endpoint,
    mode: str,
    principal: str,
    request: ExplainRequest,
    out: Explanation,
) -> None:
    dest = compose(snapshot, peer.view)
    transport = "tls" if mode != "DISABLE" else "raw_buffer"
    conn = listeners.Connection(
        ep.address, ep.port, transport, alpn=("istio",) if mode == "ISTIO_MUTUAL" else ()
    )
    if peer.view.interception == "REDIRECT":
        lst = next(
            (x for x in dest.listeners if x.use_original_dst and x.direction == "inbound"), None
        )
    else:
        lst = listeners.find_bound_listener(dest.listeners, ep.address, ep.port, "inbound")
    note = (
        " (view inferred from the registry: the workload is assumed to run a sidecar)"
        if peer.inferred
        else ""
    )
    out.add(
        "destination",
        peer.name,
        [f"the endpoint's sidecar{note}", f"inbound listener {lst.name if lst else 'none'}"],
    )
    if lst is None:
        out.outcome.notes.append(
            "the destination sidecar has no inbound listener for this port: "
            "the connection is refused"
        )
        out.outcome.status = 503
        return
    chain, reasons = listeners.select_chain(lst, conn)
    out.add("inbound filter chain", chain.name if chain else "none", reasons)
    if chain is None or (
        isinstance(chain.filter, ir.TcpProxy) and chain.filter.cluster == "BlackHoleCluster"
    ):
        out.outcome.status = 503
        out.outcome.notes.append(
            "the destination rejects this connection (e.g. plaintext under STRICT mTLS)"
        )
        return
    _verdict(chain.filter, ep, principal, request, out)


def _verdict(
    flt: ir.NetworkFilter,
    ep: ir.Endpoint,
    principal: str,
    request: ExplainRequest,
    out: Explanation,
) -> None:
    """The destination chain's JWT check and RBAC verdict for the request."""
    policies = flt.authz
    claims = None
    if isinstance(flt, ir.HttpConnectionManager):
        checked = jwt.check_jwt(flt.jwt, request)
        out.add(
            "jwt",
            "rejected" if checked.status else ("token accepted" if checked.claims else "no token"),
            checked.reasons,
        )
        if not checked.certain:
            out.outcome.notes.append(f"depends on the token: {checked.reasons[0]}")
        if checked.status is not None:
            out.outcome.status = checked.status
            out.outcome.authz = "DENY"
            out.outcome.authz_policy = "RequestAuthentication"
            return
        claims = checked.claims
    ctx = authz.AuthzContext(request, principal, claims, ep.port, ep.address)
    if not policies:
        out.add(
            "authorization",
            "ALLOW",
            ["no AuthorizationPolicy applies to this workload and port: allowed"],
        )
        out.outcome.authz = "ALLOW"
        return
    verdict = authz.evaluate(policies, ctx)
    peer_line = (
        f"caller identity: spiffe://{principal}"
        if principal
        else "caller identity: none (no mesh mTLS on this hop)"
    )
    out.add(
        "authorization",
        verdict.decision,
        [peer_line, *verdict.reasons],
        policy=verdict.policy,
        rule=verdict.rule,
    )
    out.outcome.authz = verdict.decision
    out.outcome.authz_policy = verdict.policy
    if verdict.decision == "DENY":
        out.outcome.status = 403
