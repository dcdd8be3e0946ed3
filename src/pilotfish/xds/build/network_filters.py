"""IR network filters -> Envoy ``Filter`` protos (HTTP connection manager, TCP proxy).

A TCP proxy with authorization policies becomes several filters: the network
RBAC filters (``xds/build/rbac.py``) and then ``tcp_proxy``.

The HTTP connection manager settings follow Istio's defaults: the codec is
detected (``AUTO``); the client address is taken from the connection only on
gateways (``use_remote_address``), because behind a sidecar the peer is the
application or another proxy; paths are normalized (RFC 3986) but slashes and
escaped slashes are left alone, which is Istio's ``BASE`` normalization;
WebSocket upgrades are allowed; a UUID request id is generated when missing.
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from google.protobuf import wrappers_pb2

from pilotfish import ir
from pilotfish.xds.build._common import ads_config_source, any_of
from pilotfish.xds.build.access_logs import ACCESS_LOG_FORMAT, build_access_log, build_access_logs
from pilotfish.xds.build.http_filters import build_http_filters
from pilotfish.xds.build.rbac import build_network_rbac_filters
from pilotfish.xds.build.routes import build_route_config
from pilotfish.xds.build.stats import build_http_stats_logs, build_tcp_stats_logs
from pilotfish.xds.build.tracing import build_tracing

__all__ = [
    "ACCESS_LOG_FORMAT",
    "ACCESS_LOG_PATH",
    "HTTP_CONNECTION_MANAGER",
    "TCP_PROXY",
    "build_access_log",
    "build_http_connection_manager",
    "build_network_filter",
    "build_network_filters",
    "build_tcp_proxy",
]

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
ACCESS_LOG_PATH = "/dev/stdout"


def build_network_filter(
    network_filter: ir.NetworkFilter,
    *,
    gateway: bool = False,
    peer_certified: bool | None = None,
) -> lc_pb2.Filter:
    """The listener ``Filter`` wrapping an HTTP connection manager or a TCP proxy.

    ``gateway`` is true on a gateway's listeners (see ``build_http_connection_manager``);
    ``peer_certified`` is what the chain guarantees about the downstream
    connection (``xds/build/stats.py``): True every connection presented a
    verified client certificate, False none is TLS, None either may arrive.
    """
    if isinstance(network_filter, ir.TcpProxy):
        proxy = build_tcp_proxy(network_filter, peer_certified=peer_certified)
        return lc_pb2.Filter(name=TCP_PROXY, typed_config=any_of(proxy))
    hcm = build_http_connection_manager(
        network_filter, gateway=gateway, peer_certified=peer_certified
    )
    return lc_pb2.Filter(name=HTTP_CONNECTION_MANAGER, typed_config=any_of(hcm))


def build_network_filters(
    network_filter: ir.NetworkFilter,
    *,
    gateway: bool = False,
    peer_certified: bool | None = None,
) -> list[lc_pb2.Filter]:
    """All listener filters of a chain, in order: for a TCP proxy its
    authorization (network RBAC) filters first, then the filter itself."""
    pre = (
        build_network_rbac_filters(network_filter)
        if isinstance(network_filter, ir.TcpProxy)
        else []
    )
    last = build_network_filter(network_filter, gateway=gateway, peer_certified=peer_certified)
    return [*pre, last]


def build_tcp_proxy(
    proxy: ir.TcpProxy, *, peer_certified: bool | None = None
) -> tcp_proxy_pb2.TcpProxy:
    """A TCP proxy to one cluster, or split by weight over ``weighted_clusters``."""
    if proxy.weighted_clusters:
        weighted = tcp_proxy_pb2.TcpProxy.WeightedCluster(
            clusters=[
                tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=name, weight=weight)
                for name, weight in proxy.weighted_clusters
            ]
        )
        proto = tcp_proxy_pb2.TcpProxy(stat_prefix=proxy.stat_prefix, weighted_clusters=weighted)
    else:
        proto = tcp_proxy_pb2.TcpProxy(stat_prefix=proxy.stat_prefix, cluster=proxy.cluster)
    proto.access_log.extend(build_access_logs(proxy.access_logs))
    if proxy.metrics is not None:
        # Log when the upstream connection is up too: connections opened.
        proto.access_log.extend(build_tcp_stats_logs(proxy.metrics, peer_certified))
        proto.access_log_options.flush_access_log_on_connected = True
    return proto


def build_http_connection_manager(
    hcm: ir.HttpConnectionManager, *, gateway: bool = False, peer_certified: bool | None = None
) -> hcm_pb2.HttpConnectionManager:
    """The HTTP connection manager for ``hcm``.

    Routes come from RDS over ADS when ``route_config_name`` is set, else from
    ``inline_routes``; one of the two is required (``ValueError`` otherwise).
    ``gateway`` makes Envoy trust the connection's peer as the client address.
    """
    proto = hcm_pb2.HttpConnectionManager(
        stat_prefix=hcm.stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        http_filters=build_http_filters(hcm),
        use_remote_address=wrappers_pb2.BoolValue(value=gateway),
        normalize_path=wrappers_pb2.BoolValue(value=True),
        merge_slashes=False,
        path_with_escaped_slashes_action=hcm_pb2.HttpConnectionManager.KEEP_UNCHANGED,
        upgrade_configs=[hcm_pb2.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
        generate_request_id=wrappers_pb2.BoolValue(value=True),
        request_id_extension=hcm_pb2.RequestIDExtension(
            typed_config=any_of(uuid_pb2.UuidRequestIdConfig())
        ),
    )
    if hcm.route_config_name:
        proto.rds.config_source.CopyFrom(ads_config_source())
        proto.rds.route_config_name = hcm.route_config_name
    elif hcm.inline_routes is not None:
        proto.route_config.CopyFrom(build_route_config(hcm.inline_routes))
    else:
        raise ValueError(
            f"HTTP connection manager {hcm.stat_prefix!r} has neither "
            "route_config_name nor inline_routes"
        )
    proto.access_log.extend(build_access_logs(hcm.access_logs))
    if hcm.metrics is not None:
        proto.access_log.extend(build_http_stats_logs(hcm.metrics, peer_certified))
    if hcm.tracing is not None:
        proto.tracing.CopyFrom(build_tracing(hcm.tracing))
    if hcm.forward_client_cert:
        # The app sees the verified caller (subject, SPIFFE URI, DNS SANs) in
        # x-forwarded-client-cert; whatever the caller sent is replaced. Without
        # it Envoy's default (SANITIZE) strips the header, so it cannot be forged.
        proto.forward_client_cert_details = hcm_pb2.HttpConnectionManager.SANITIZE_SET
        details = proto.set_current_client_cert_details
        details.subject.value = True
        details.uri = True
        details.dns = True
    return proto
