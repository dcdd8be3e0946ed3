"""The intermediate representation between translation and Envoy protos.

``ProxyConfig`` is everything one proxy receives, in mesh terms: plain frozen
dataclasses that tests, goldens and ``explain``-style tools can read without
protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilotfish.ir.clusters import (
    Cluster,
    ClusterLoadAssignment,
    ConnectionPool,
    ConsistentHashLb,
    Discovery,
    Endpoint,
    LbPolicy,
    LocalityLbEndpoints,
    OutlierDetection,
    TcpKeepalive,
)
from pilotfish.ir.listeners import (
    FilterChain,
    FilterChainMatch,
    HttpConnectionManager,
    Listener,
    NetworkFilter,
    TcpProxy,
)
from pilotfish.ir.routes import (
    ClaimMatch,
    CorsPolicy,
    DirectResponseAction,
    FaultPolicy,
    ForwardAction,
    HashPolicy,
    HeaderMatch,
    HeaderOps,
    MirrorPolicy,
    QueryParamMatch,
    RedirectAction,
    RetryPolicy,
    Route,
    RouteAction,
    RouteConfig,
    RouteMatch,
    StringMatch,
    VirtualHost,
    WeightedCluster,
)
from pilotfish.ir.security import (
    CREDENTIAL_PREFIX,
    SDS_ROOT_CA,
    SDS_WORKLOAD_CERT,
    AuthzMatch,
    AuthzPolicy,
    AuthzRule,
    CertSource,
    CredentialSecret,
    DownstreamTls,
    JwtAuthn,
    JwtHeader,
    JwtProvider,
    RoutePolicy,
    UpstreamTls,
    credential_ca_name,
    credential_name,
    credential_namespace,
)
from pilotfish.ir.telemetry import (
    SPAN_SINK_CLUSTER,
    AccessLog,
    CustomTag,
    Metrics,
    MetricTagOverride,
    Reporter,
    Tracing,
    TracingProvider,
)

__all__ = [
    "CREDENTIAL_PREFIX",
    "SDS_ROOT_CA",
    "SDS_WORKLOAD_CERT",
    "SPAN_SINK_CLUSTER",
    "AccessLog",
    "AuthzMatch",
    "AuthzPolicy",
    "AuthzRule",
    "CertSource",
    "ClaimMatch",
    "Cluster",
    "ClusterLoadAssignment",
    "ConnectionPool",
    "ConsistentHashLb",
    "CorsPolicy",
    "CredentialSecret",
    "CustomTag",
    "DirectResponseAction",
    "Discovery",
    "DownstreamTls",
    "Endpoint",
    "FaultPolicy",
    "FilterChain",
    "FilterChainMatch",
    "ForwardAction",
    "HashPolicy",
    "HeaderMatch",
    "HeaderOps",
    "HttpConnectionManager",
    "JwtAuthn",
    "JwtHeader",
    "JwtProvider",
    "LbPolicy",
    "Listener",
    "LocalityLbEndpoints",
    "MetricTagOverride",
    "Metrics",
    "MirrorPolicy",
    "NetworkFilter",
    "OutlierDetection",
    "ProxyConfig",
    "QueryParamMatch",
    "RedirectAction",
    "Reporter",
    "RetryPolicy",
    "Route",
    "RouteAction",
    "RouteConfig",
    "RouteMatch",
    "RoutePolicy",
    "StringMatch",
    "TcpKeepalive",
    "TcpProxy",
    "Tracing",
    "TracingProvider",
    "UpstreamTls",
    "VirtualHost",
    "WeightedCluster",
    "credential_ca_name",
    "credential_name",
    "credential_namespace",
]


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Everything one proxy gets from the control plane, by xDS type."""

    listeners: tuple[Listener, ...] = ()
    route_configs: tuple[RouteConfig, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    load_assignments: tuple[ClusterLoadAssignment, ...] = ()
    # Credential (``credentialName``) secrets served on the ADS stream.
    secrets: tuple[CredentialSecret, ...] = ()
