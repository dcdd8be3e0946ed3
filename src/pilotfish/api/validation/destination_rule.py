"""Semantic checks of a DestinationRule, following Istio's validation rules."""

from __future__ import annotations

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.destination_rule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    DestinationRuleSpec,
    LoadBalancerSettings,
    OutlierDetection,
    TrafficPolicy,
)
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["validate"]


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, DestinationRuleSpec)
    f = Findings(resource)
    if not spec.host:
        f.error("spec.host", "host must not be empty")
    else:
        f.add("spec.host", checks.check_host(spec.host))
    if spec.traffic_policy is not None:
        _traffic_policy(f, spec.traffic_policy, "spec.trafficPolicy", port_level=True)
    names: set[str] = set()
    for i, subset in enumerate(spec.subsets):
        path = f"spec.subsets[{i}]"
        problem = checks.check_dns1123_label(subset.name, "subset name")
        if problem is not None:
            f.error(f"{path}.name", problem)
        elif subset.name in names:
            f.error(f"{path}.name", f"duplicate subset name {subset.name!r}")
        names.add(subset.name)
        for p, msg in checks.label_problems(subset.labels, f"{path}.labels"):
            f.error(p, msg)
        if subset.traffic_policy is not None:
            _traffic_policy(f, subset.traffic_policy, f"{path}.trafficPolicy", port_level=True)
    for i, problem in checks.check_export_to(spec.export_to):
        f.error(f"spec.exportTo[{i}]", problem)
    if spec.workload_selector is not None:
        ws = spec.workload_selector.match_labels
        for p, msg in checks.label_problems(ws, "spec.workloadSelector.matchLabels"):
            f.error(p, msg)
        if not ws:
            f.warning("spec.workloadSelector", "an empty workloadSelector selects every workload")
    return f.items


def _traffic_policy(f: Findings, tp: TrafficPolicy, path: str, *, port_level: bool) -> None:
    if (
        tp.load_balancer is None
        and tp.connection_pool is None
        and tp.outlier_detection is None
        and tp.tls is None
        and not tp.port_level_settings
        and tp.tunnel is None
        and tp.proxy_protocol is None
    ):
        f.error(path, "a traffic policy must set at least one field")
    if tp.load_balancer is not None:
        _load_balancer(f, tp.load_balancer, f"{path}.loadBalancer")
    if tp.connection_pool is not None:
        _connection_pool(f, tp.connection_pool, f"{path}.connectionPool")
    if tp.outlier_detection is not None:
        _outlier(f, tp.outlier_detection, f"{path}.outlierDetection")
    if tp.tls is not None:
        _tls(f, tp.tls, f"{path}.tls")
    if tp.tunnel is not None:
        f.add(f"{path}.tunnel.targetHost", checks.check_host(tp.tunnel.target_host, allow_ip=True))
        f.add(f"{path}.tunnel.targetPort", checks.check_port(tp.tunnel.target_port))
    ports: set[int] = set()
    for i, pls in enumerate(tp.port_level_settings):
        pp = f"{path}.portLevelSettings[{i}]"
        number = pls.port.number if pls.port is not None else None
        if number is None:
            f.error(f"{pp}.port", "port-level settings need port.number")
        else:
            f.add(f"{pp}.port.number", checks.check_port(number))
            if number in ports:
                f.error(f"{pp}.port.number", f"duplicate port-level settings for port {number}")
            ports.add(number)
        if pls.load_balancer is not None:
            _load_balancer(f, pls.load_balancer, f"{pp}.loadBalancer")
        if pls.connection_pool is not None:
            _connection_pool(f, pls.connection_pool, f"{pp}.connectionPool")
        if pls.outlier_detection is not None:
            _outlier(f, pls.outlier_detection, f"{pp}.outlierDetection")
        if pls.tls is not None:
            _tls(f, pls.tls, f"{pp}.tls")


def _load_balancer(f: Findings, lb: LoadBalancerSettings, path: str) -> None:
    if lb.simple is not None and lb.consistent_hash is not None:
        f.error(path, "simple and consistentHash are mutually exclusive")
    ch = lb.consistent_hash
    if ch is not None:
        cp = f"{path}.consistentHash"
        keys = [
            k
            for k, v in (
                ("httpHeaderName", ch.http_header_name),
                ("httpCookie", ch.http_cookie),
                ("useSourceIp", ch.use_source_ip),
                ("httpQueryParameterName", ch.http_query_parameter_name),
            )
            if v is not None
        ]
        if len(keys) != 1:
            f.error(
                cp,
                "exactly one hash key (httpHeaderName, httpCookie, useSourceIp, "
                "httpQueryParameterName) must be set",
            )
        if ch.ring_hash is not None and ch.maglev is not None:
            f.error(cp, "ringHash and maglev are mutually exclusive")
        if ch.http_cookie is not None and ch.http_cookie.ttl is not None:
            f.add(f"{cp}.httpCookie.ttl", checks.check_duration(ch.http_cookie.ttl, minimum_ms=0))
    loc = lb.locality_lb_setting
    if loc is not None:
        lp = f"{path}.localityLbSetting"
        if loc.distribute and loc.failover:
            f.error(lp, "distribute and failover are mutually exclusive")
        for i, d in enumerate(loc.distribute):
            total = sum(d.to.values())
            if total != 100:
                f.error(f"{lp}.distribute[{i}].to", f"locality weights sum to {total}, not 100")
    if lb.warmup_duration_secs is not None:
        f.add(f"{path}.warmupDurationSecs", checks.check_duration(lb.warmup_duration_secs))
    if lb.warmup is not None:
        f.add(f"{path}.warmup.duration", checks.check_duration(lb.warmup.duration))


def _connection_pool(f: Findings, cp: ConnectionPoolSettings, path: str) -> None:
    if cp.tcp is None and cp.http is None:
        f.error(path, "a connection pool must set tcp and/or http")
    if cp.tcp is not None:
        t, tp = cp.tcp, f"{path}.tcp"
        _non_negative(f, t.max_connections, f"{tp}.maxConnections")
        for name, value in (
            ("connectTimeout", t.connect_timeout),
            ("maxConnectionDuration", t.max_connection_duration),
            ("idleTimeout", t.idle_timeout),
        ):
            if value is not None:
                f.add(f"{tp}.{name}", checks.check_duration(value))
        if t.tcp_keepalive is not None:
            for name, value in (
                ("time", t.tcp_keepalive.time),
                ("interval", t.tcp_keepalive.interval),
            ):
                if value is not None:
                    f.add(f"{tp}.tcpKeepalive.{name}", checks.check_duration(value))
    if cp.http is not None:
        h, hp = cp.http, f"{path}.http"
        for name, number in (
            ("http1MaxPendingRequests", h.http1_max_pending_requests),
            ("http2MaxRequests", h.http2_max_requests),
            ("maxRequestsPerConnection", h.max_requests_per_connection),
            ("maxRetries", h.max_retries),
            ("maxConcurrentStreams", h.max_concurrent_streams),
        ):
            _non_negative(f, number, f"{hp}.{name}")
        if h.idle_timeout is not None:
            f.add(f"{hp}.idleTimeout", checks.check_duration(h.idle_timeout))


def _outlier(f: Findings, od: OutlierDetection, path: str) -> None:
    for name, number in (
        ("consecutiveLocalOriginFailures", od.consecutive_local_origin_failures),
        ("consecutiveGatewayErrors", od.consecutive_gateway_errors),
        ("consecutive5xxErrors", od.consecutive_5xx_errors),
        ("consecutiveErrors", od.consecutive_errors),
    ):
        _non_negative(f, number, f"{path}.{name}")
    for name, value in (("interval", od.interval), ("baseEjectionTime", od.base_ejection_time)):
        if value is not None:
            f.add(f"{path}.{name}", checks.check_duration(value))
    for name, pct in (
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ):
        if pct is not None:
            f.add(f"{path}.{name}", checks.check_percent(pct))


def _tls(f: Findings, tls: ClientTLSSettings, path: str) -> None:
    has_files = bool(tls.client_certificate or tls.private_key or tls.ca_certificates)
    if tls.mode == "ISTIO_MUTUAL" and (has_files or tls.credential_name):
        f.error(
            path,
            "ISTIO_MUTUAL uses mesh certificates: do not set certificate files or credentialName",
        )
    if tls.mode == "MUTUAL" and not tls.credential_name:
        if not tls.client_certificate:
            f.error(
                f"{path}.clientCertificate",
                "MUTUAL TLS needs clientCertificate (or credentialName)",
            )
        if not tls.private_key:
            f.error(f"{path}.privateKey", "MUTUAL TLS needs privateKey (or credentialName)")
    if tls.sni is not None:
        f.add(f"{path}.sni", checks.check_host(tls.sni, allow_wildcard=False))


def _non_negative(f: Findings, value: int | None, path: str) -> None:
    if value is not None and value < 0:
        f.error(path, f"{value} must not be negative")
