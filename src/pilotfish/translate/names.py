"""Names users already know from Istio, in one place."""

from __future__ import annotations

__all__ = [
    "BLACKHOLE_CLUSTER",
    "HTTP_PROXY_ROUTE",
    "INBOUND_PASSTHROUGH_CLUSTER",
    "INBOUND_PASSTHROUGH_SOURCE",
    "PASSTHROUGH_CLUSTER",
    "VIRTUAL_INBOUND",
    "VIRTUAL_OUTBOUND",
    "gateway_route_name",
    "inbound_cluster",
    "outbound_cluster",
]

PASSTHROUGH_CLUSTER = "PassthroughCluster"
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"
#: Istio's source address for the inbound passthrough cluster's connections to
#: the app: the capture rules let traffic from it reach the app instead of
#: redirecting Envoy's connection to its own pod address back into Envoy.
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_INBOUND = "virtualInbound"
HTTP_PROXY_ROUTE = "http_proxy"


def outbound_cluster(hostname: str, port: int, subset: str = "") -> str:
    """``outbound|9080|v1|reviews.default.svc.cluster.local``."""
    return f"outbound|{port}|{subset}|{hostname}"


def inbound_cluster(port: int) -> str:
    """``inbound|9080||``."""
    return f"inbound|{port}||"


def gateway_route_name(port: int) -> str:
    """Route configuration of a gateway server port, ``http.8080`` as in Istio."""
    return f"http.{port}"
