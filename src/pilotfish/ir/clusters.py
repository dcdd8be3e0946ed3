"""IR for upstream clusters and their endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pilotfish.ir.security import UpstreamTls

__all__ = [
    "Cluster",
    "ClusterLoadAssignment",
    "ConnectionPool",
    "ConsistentHashLb",
    "Discovery",
    "Endpoint",
    "LbPolicy",
    "LocalityLbEndpoints",
    "OutlierDetection",
    "TcpKeepalive",
]

Discovery = Literal["EDS", "STATIC", "STRICT_DNS", "LOGICAL_DNS", "ORIGINAL_DST"]
LbPolicy = Literal[
    "ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV", "CLUSTER_PROVIDED"
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    weight: int = 1
    locality: str = ""  # region/zone/subzone
    # "istio" when the endpoint has a sidecar that accepts mesh mTLS (auto mTLS).
    tls_mode: str = ""
    # Facts about the endpoint's workload (``peer_labels.workload_facts``), sorted
    # pairs: endpoint metadata the source proxy's metrics read. () for none.
    workload: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LocalityLbEndpoints:
    """Endpoints of one locality at one priority (0 is tried first), with the
    locality's weight (``None``: unset) for locality-weighted load balancing."""

    locality: str
    endpoints: tuple[Endpoint, ...]
    priority: int = 0
    weight: int | None = None


@dataclass(frozen=True, slots=True)
class ClusterLoadAssignment:
    """Endpoints of an EDS cluster; sent separately so endpoint-only changes push only EDS.

    ``localities``, when not empty, is the explicit grouping (priorities and
    locality weights, from locality load balancing) and replaces the default
    grouping of ``endpoints`` by locality.
    """

    cluster_name: str
    endpoints: tuple[Endpoint, ...]
    localities: tuple[LocalityLbEndpoints, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsistentHashLb:
    kind: Literal["RING_HASH", "MAGLEV"] = "RING_HASH"
    minimum_ring_size: int | None = None


@dataclass(frozen=True, slots=True)
class TcpKeepalive:
    """Socket keepalive on upstream connections; ``None`` keeps the OS default."""

    probes: int | None = None
    time_s: int | None = None
    interval_s: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    """Circuit-breaker limits and connection options (DestinationRule ``connectionPool``).

    A ``None`` limit is unlimited; a ``None`` option is Envoy's default.
    """

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None
    max_retries: int | None = None
    max_requests_per_connection: int | None = None
    idle_timeout_ms: int | None = None
    max_connection_duration_ms: int | None = None
    max_concurrent_streams: int | None = None
    tcp_keepalive: TcpKeepalive | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Passive health checking (DestinationRule ``outlierDetection``), in Envoy terms.

    ``None`` fields are left to Envoy's defaults; ``enforcing_*`` are percents.
    ``healthy_panic_threshold`` is the cluster's panic threshold percent
    (Istio's ``minHealthPercent``; 0 disables panic routing).
    """

    consecutive_5xx: int | None = None
    enforcing_consecutive_5xx: int | None = None
    consecutive_gateway_failure: int | None = None
    enforcing_consecutive_gateway_failure: int | None = None
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failure: int | None = None
    enforcing_consecutive_local_origin_failure: int | None = None
    enforcing_local_origin_success_rate: int | None = None
    interval_ms: int | None = None
    base_ejection_time_ms: int | None = None
    max_ejection_percent: int | None = None
    healthy_panic_threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Cluster:
    """An upstream cluster.

    ``endpoints`` is used only for STATIC / STRICT_DNS / LOGICAL_DNS clusters;
    EDS clusters get theirs from a ``ClusterLoadAssignment`` of the same name.
    ``service``/``subset``/``port`` record which mesh service this serves (for
    debugging and stats), not behaviour.
    """

    name: str
    discovery: Discovery
    lb_policy: LbPolicy = "ROUND_ROBIN"
    connect_timeout_ms: int = 10_000
    endpoints: tuple[Endpoint, ...] = ()
    http2: bool = False
    consistent_hash: ConsistentHashLb | None = None
    service: str = ""
    subset: str = ""
    port: int = 0
    direction: Literal["outbound", "inbound", "other"] = "outbound"
    # TLS to every endpoint (DestinationRule tls, or mesh mTLS when forced).
    tls: UpstreamTls | None = None
    # Auto mTLS: this TLS only to endpoints whose ``tls_mode`` is "istio",
    # plaintext to the others (Envoy transport socket matches).
    auto_mtls: UpstreamTls | None = None
    # DestinationRule connection pool; None keeps Istio's unlimited thresholds.
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    # Locality-weighted load balancing (locality weights and priorities come with EDS).
    locality_weighted: bool = False
    # The local address upstream connections are made from ("" lets the kernel
    # choose). The inbound passthrough cluster dials the pod's own address, and
    # only this source keeps the capture rules from handing it back to Envoy.
    source_address: str = ""
    # HTTP/1.1 or HTTP/2 as the server picks by ALPN (``http2`` unset): for TLS
    # the cluster originates to a port that declares no HTTP protocol, so a
    # gRPC backend behind TLS gets HTTP/2 and an HTTP/1.1-only one HTTP/1.1.
    negotiate_http: bool = False
