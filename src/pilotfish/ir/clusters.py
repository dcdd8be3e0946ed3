"""IR for upstream clusters and their endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pilotfish.ir.security import UpstreamTls

__all__ = [
    "Cluster",
    "ClusterLoadAssignment",
    "ConsistentHashLb",
    "Discovery",
    "Endpoint",
    "LbPolicy",
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


@dataclass(frozen=True, slots=True)
class ClusterLoadAssignment:
    """Endpoints of an EDS cluster; sent separately so endpoint-only changes push only EDS."""

    cluster_name: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class ConsistentHashLb:
    kind: Literal["RING_HASH", "MAGLEV"] = "RING_HASH"
    minimum_ring_size: int | None = None


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
