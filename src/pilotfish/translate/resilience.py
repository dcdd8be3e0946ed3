"""DestinationRule ``connectionPool`` and ``outlierDetection`` as cluster IR.

Both follow Istio's translation (its cluster builder) field by field, so that
a rule behaves as users expect from Istio:

- connection pool: ``tcp.maxConnections`` -> ``max_connections``,
  ``http.http1MaxPendingRequests`` -> ``max_pending_requests``,
  ``http.http2MaxRequests`` -> ``max_requests``, ``http.maxRetries`` ->
  ``max_retries`` (each only when > 0; otherwise Istio's unlimited default);
  ``http.idleTimeout`` (else ``tcp.idleTimeout``), ``maxRequestsPerConnection``
  and ``tcp.maxConnectionDuration`` go to the HTTP protocol options,
  ``maxConcurrentStreams`` to HTTP/2 options (HTTP/2 clusters only),
  ``tcp.tcpKeepalive`` to the upstream socket options (whole seconds).
- outlier detection: success-rate ejection is always off; the deprecated
  ``consecutiveErrors`` counts gateway errors only (and turns 5xx enforcing
  off); ``consecutive5xxErrors`` / ``consecutiveGatewayErrors`` set the count
  and enforce at 100% when > 0 (0 disables); local-origin failures count only
  with ``splitExternalLocalOriginErrors``; ``minHealthPercent`` becomes the
  cluster's healthy panic threshold, which Istio sets even when unset (0:
  panic routing off, as few pods per service make it misleading).
"""

from __future__ import annotations

from pilotfish.api.duration import parse_duration_ms
from pilotfish.api.networking.destination_rule import (
    ConnectionPoolSettings,
    OutlierDetection,
    TCPKeepalive,
)
from pilotfish.ir import ConnectionPool, TcpKeepalive
from pilotfish.ir import OutlierDetection as OutlierIr

__all__ = ["connection_pool_ir", "outlier_detection_ir"]


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def _ms(value: str | None) -> int | None:
    return parse_duration_ms(value) if value else None


def _keepalive(keepalive: TCPKeepalive | None) -> TcpKeepalive | None:
    if keepalive is None:
        return None
    # Envoy takes whole seconds; Istio truncates the Duration to its seconds.
    time_ms, interval_ms = _ms(keepalive.time), _ms(keepalive.interval)
    return TcpKeepalive(
        probes=_positive(keepalive.probes),
        time_s=time_ms // 1000 if time_ms is not None else None,
        interval_s=interval_ms // 1000 if interval_ms is not None else None,
    )


def connection_pool_ir(settings: ConnectionPoolSettings | None) -> ConnectionPool | None:
    """The cluster's limits and connection options; ``None`` when the pool sets none
    (the cluster keeps the unlimited thresholds). ``connectTimeout`` and
    ``h2UpgradePolicy`` are cluster fields of their own and not handled here."""
    if settings is None:
        return None
    http, tcp = settings.http, settings.tcp
    idle_ms = _ms(http.idle_timeout) if http is not None else None
    if idle_ms is None and tcp is not None:
        idle_ms = _ms(tcp.idle_timeout)
    pool = ConnectionPool(
        max_connections=_positive(tcp.max_connections) if tcp else None,
        max_pending_requests=_positive(http.http1_max_pending_requests) if http else None,
        max_requests=_positive(http.http2_max_requests) if http else None,
        max_retries=_positive(http.max_retries) if http else None,
        max_requests_per_connection=_positive(http.max_requests_per_connection) if http else None,
        idle_timeout_ms=idle_ms,
        max_connection_duration_ms=_ms(tcp.max_connection_duration) if tcp else None,
        max_concurrent_streams=_positive(http.max_concurrent_streams) if http else None,
        tcp_keepalive=_keepalive(tcp.tcp_keepalive) if tcp else None,
    )
    # Only connectTimeout/h2UpgradePolicy set: nothing for the pool to change.
    return None if pool == ConnectionPool() else pool


def _enforcing(count: int) -> int:
    return 100 if count > 0 else 0


def outlier_detection_ir(outlier: OutlierDetection | None) -> OutlierIr | None:
    """Envoy's outlier detection for the rule's ``outlierDetection`` (``None`` when unset)."""
    if outlier is None:
        return None
    fields: dict[str, object] = {}
    if outlier.consecutive_errors is not None and outlier.consecutive_errors > 0:
        # The deprecated field counts gateway errors only.
        fields["consecutive_gateway_failure"] = outlier.consecutive_errors
        fields["enforcing_consecutive_gateway_failure"] = 100
        fields["enforcing_consecutive_5xx"] = 0
    if outlier.consecutive_5xx_errors is not None:
        fields["consecutive_5xx"] = outlier.consecutive_5xx_errors
        fields["enforcing_consecutive_5xx"] = _enforcing(outlier.consecutive_5xx_errors)
    if outlier.consecutive_gateway_errors is not None:
        fields["consecutive_gateway_failure"] = outlier.consecutive_gateway_errors
        fields["enforcing_consecutive_gateway_failure"] = _enforcing(
            outlier.consecutive_gateway_errors
        )
    if outlier.split_external_local_origin_errors:
        fields["split_external_local_origin_errors"] = True
        local = outlier.consecutive_local_origin_failures
        if local is not None and local > 0:
            fields["consecutive_local_origin_failure"] = local
            fields["enforcing_consecutive_local_origin_failure"] = 100
        fields["enforcing_local_origin_success_rate"] = 0
    min_health = outlier.min_health_percent or 0
    return OutlierIr(
        interval_ms=_ms(outlier.interval),
        base_ejection_time_ms=_ms(outlier.base_ejection_time),
        max_ejection_percent=_positive(outlier.max_ejection_percent),
        healthy_panic_threshold=float(max(min_health, 0)),
        **fields,  # type: ignore[arg-type]
    )
