"""IR ``NodeProxyConfig`` -> the node proxy's Envoy listeners and clusters.

Every listener binds inside its pod's network namespace
(``SocketAddress.network_namespace_filepath``) and every cluster creates its
upstream sockets there (``upstream_bind_config`` with the same field), so the
node proxy's connections leave from the pod itself: the destination sees the
pod's address and the pod's capture rules (which exempt the proxy user) apply.
See ``pilotfish.translate.ambient.node_proxy`` for what each piece is for.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from pilotfish.ir.node_proxy import AmbientPod, InboundPort, NodeProxyConfig, OutboundDestination
from pilotfish.ir.security import SDS_ROOT_CA, AuthzPolicy, CertSource, DownstreamTls, UpstreamTls
from pilotfish.model.ambient import HBONE_PORT
from pilotfish.translate.names import INBOUND_PASSTHROUGH_SOURCE
from pilotfish.translate.security.mtls import ISTIO_ALPN
from pilotfish.xds.build.node_proxy_stats import (
    connect_headers,
    hbone_stats_logs,
    outbound_stats_logs,
)
from pilotfish.xds.build.rbac import (
    NETWORK_RBAC_FILTER_NAME,
    RBAC_FILTER_NAME,
    build_network_rbac,
    build_rbac,
)
from pilotfish.xds.build.tls import (
    TLS_TRANSPORT_SOCKET,
    build_downstream_tls_context,
    build_upstream_tls_context,
)

__all__ = [
    "BLACKHOLE_CLUSTER",
    "INBOUND_CAPTURE_PORT",
    "OUTBOUND_CAPTURE_PORT",
    "build_node_proxy",
    "listener_names",
]

OUTBOUND_CAPTURE_PORT = 15001
INBOUND_CAPTURE_PORT = 15006
_CONNECT_TIMEOUT = "5s"
_TYPE = "type.googleapis.com/"
_TCP_PROXY = _TYPE + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
_HCM = _TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ACTIONS = ("DENY", "ALLOW")
# A cluster without endpoints: a connection sent there is closed at once.
BLACKHOLE_CLUSTER = "ambient_blackhole"


def _any(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = json_format.MessageToDict(message)
    return {"@type": _TYPE + message.DESCRIPTOR.full_name, **body}


def _pod_id(pod: AmbientPod) -> str:
    return f"{pod.name}.{pod.namespace}"


def listener_names(pod: AmbientPod) -> tuple[str, str, str]:
    """The outbound, inbound and HBONE listeners of ``pod``."""
    pid = _pod_id(pod)
    return (f"ambient_outbound|{pid}", f"ambient_inbound|{pid}", f"ambient_hbone|{pid}")


def _address(pod: AmbientPod, address: str, port: int) -> dict[str, Any]:
    return {
        "socket_address": {
            "address": address,
            "port_value": port,
            "network_namespace_filepath": pod.netns_path,
        }
    }


def _tcp_proxy(
    stat: str,
    cluster: str,
    authority: str = "",
    logs: list[dict[str, Any]] | None = None,
    connect_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": _TCP_PROXY, "stat_prefix": stat, "cluster": cluster}
    if authority:
        tunnel: dict[str, Any] = {"hostname": authority}
        if connect_headers:
            tunnel["headers_to_add"] = [
                {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for k, v in connect_headers.items()
            ]
        config["tunneling_config"] = tunnel
    if logs:
        config["access_log"] = logs
        config["access_log_options"] = {"flush_access_log_on_connected": True}
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": config}


def _sds(name: str) -> CertSource:
    return CertSource(sds=name)


def _tls_socket(message: Message) -> dict[str, Any]:
    return {"name": TLS_TRANSPORT_SOCKET, "typed_config": _any(message)}


def _server_tls(pod: AmbientPod, alpn: tuple[str, ...]) -> dict[str, Any]:
    tls = DownstreamTls(
        server_cert=_sds(pod.identity),
        trusted_ca=_sds(SDS_ROOT_CA),
        require_client_cert=True,
        alpn=alpn,
    )
    return _tls_socket(build_downstream_tls_context(tls))


def _network_rbac(policies: tuple[AuthzPolicy, ...]) -> list[dict[str, Any]]:
    actions = {p.action for p in policies}
    return [
        {
            "name": f"{NETWORK_RBAC_FILTER_NAME}.{action.lower()}",
            "typed_config": _any(build_network_rbac(policies, action)),
        }
        for action in _ACTIONS
        if action in actions
    ]


# -- listeners -----------------------------------------------------------------------


def _outbound_listener(pod: AmbientPod) -> dict[str, Any]:
    name = listener_names(pod)[0]
    chains = [
        {
            "name": d.cluster,
            "filter_chain_match": {
                "prefix_ranges": [{"address_prefix": d.address, "prefix_len": 32}],
                "destination_port": d.port,
            },
            "filters": [
                _tcp_proxy(
                    d.cluster,
                    d.cluster,
                    d.authority if d.hbone else "",
                    outbound_stats_logs(pod, d),
                    connect_headers(pod, d),
                )
            ],
        }
        for d in pod.outbound
    ]
    # The node proxy's own ports on loopback (a readiness check) end here: passed
    # through, such a connection would come straight back to this listener.
    chains.append(
        {
            "name": "own-ports",
            "filter_chain_match": {
                "prefix_ranges": [{"address_prefix": "127.0.0.0", "prefix_len": 8}],
                "destination_port": OUTBOUND_CAPTURE_PORT,
            },
            "filters": [_tcp_proxy(f"{name}|own", BLACKHOLE_CLUSTER)],
        }
    )
    passthrough = f"ambient_passthrough|{_pod_id(pod)}"
    return {
        "name": name,
        "address": _address(pod, "0.0.0.0", OUTBOUND_CAPTURE_PORT),
        "listener_filters": [_original_dst()],
        "filter_chains": chains,
        "default_filter_chain": {"name": "passthrough", "filters": [_tcp_proxy(name, passthrough)]},
    }


def _original_dst() -> dict[str, Any]:
    return {
        "name": "envoy.filters.listener.original_dst",
        "typed_config": {
            "@type": _TYPE + "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
        },
    }


def _inbound_listener(pod: AmbientPod) -> dict[str, Any]:
    """Istio mTLS (sidecars, gateways) and, unless STRICT, plaintext, per app port."""
    name = listener_names(pod)[1]
    chains = []
    for p in pod.inbound:
        filters = [*_network_rbac(p.authz), _tcp_proxy(p.cluster, p.cluster)]
        if p.mtls != "DISABLE":
            chains.append(
                {
                    "name": f"{p.cluster}-mtls",
                    "filter_chain_match": {"destination_port": p.port, "transport_protocol": "tls"},
                    "transport_socket": _server_tls(pod, ()),
                    "filters": filters,
                }
            )
        if p.mtls != "STRICT":
            chains.append(
                {
                    "name": f"{p.cluster}-plaintext",
                    "filter_chain_match": {
                        "destination_port": p.port,
                        "transport_protocol": "raw_buffer",
                    },
                    "filters": filters,
                }
            )
    if not chains:
        # A pod without ports: Envoy refuses a listener without chains, and the
        # pod's readiness waits for this one, so it closes whatever arrives.
        chains.append(
            {"name": "no-ports", "filters": [_tcp_proxy(f"{name}|closed", BLACKHOLE_CLUSTER)]}
        )
    return {
        "name": name,
        "address": _address(pod, "0.0.0.0", INBOUND_CAPTURE_PORT),
        "listener_filters": [
            _original_dst(),
            {
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {
                    "@type": _TYPE
                    + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
                },
            },
        ],
        # A connection no chain accepts (plaintext under STRICT, an unknown port) is
        # closed: there is no default chain.
        "filter_chains": chains,
    }


def _per_route_rbac(port: InboundPort) -> dict[str, Any]:
    out: dict[str, Any] = {}
    actions = {p.action for p in port.authz}
    for action in _ACTIONS:
        if action in actions:
            per_route = {
                "@type": _TYPE + "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
                "rbac": json_format.MessageToDict(build_rbac(port.authz, action)),
            }
            out[f"{RBAC_FILTER_NAME}.{action.lower()}"] = per_route
    return out


def _hbone_listener(pod: AmbientPod) -> dict[str, Any]:
    """HBONE: mTLS with the pod's certificate, CONNECT streams authorized per port."""
    name = listener_names(pod)[2]
    routes = []
    for p in pod.inbound:
        route: dict[str, Any] = {
            "name": p.cluster,
            "match": {
                "connect_matcher": {},
                "headers": [{"name": ":authority", "string_match": {"suffix": f":{p.port}"}}],
            },
            "route": {
                "cluster": p.cluster,
                "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}],
            },
        }
        rbac = _per_route_rbac(p)
        if rbac:
            route["typed_per_filter_config"] = rbac
        routes.append(route)
    rbac_type = _TYPE + "envoy.extensions.filters.http.rbac.v3.RBAC"
    # Without rules the filters enforce nothing; each route's RBACPerRoute holds
    # its port's policies.
    http_filters: list[dict[str, Any]] = [
        {"name": f"{RBAC_FILTER_NAME}.{action.lower()}", "typed_config": {"@type": rbac_type}}
        for action in _ACTIONS
    ]
    http_filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": _TYPE + "envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    hcm = {
        "@type": _HCM,
        "stat_prefix": name,
        "codec_type": "HTTP2",
        "http2_protocol_options": {"allow_connect": True},
        "upgrade_configs": [{"upgrade_type": "CONNECT"}],
        "route_config": {
            "name": name,
            "virtual_hosts": [{"name": "hbone", "domains": ["*"], "routes": routes}],
        },
        "http_filters": http_filters,
        "access_log": hbone_stats_logs(pod),
        "access_log_options": {"flush_access_log_on_new_request": True},
    }
    return {
        "name": name,
        "address": _address(pod, "0.0.0.0", HBONE_PORT),
        "filter_chains": [
            {
                "transport_socket": _server_tls(pod, ("h2",)),
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ],
            }
        ],
    }


# -- clusters ------------------------------------------------------------------------


def _bind(pod: AmbientPod, source: str) -> dict[str, Any]:
    return {"source_address": _address(pod, source, 0)["socket_address"]}


def _endpoints(name: str, addresses: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "cluster_name": name,
        "endpoints": [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": a, "port_value": p}}}}
                    for a, p in addresses
                ]
            }
        ],
    }


def _outbound_cluster(pod: AmbientPod, d: OutboundDestination) -> dict[str, Any]:
    """The source pod's cluster for ``d``: its own certificate, sockets in its namespace."""
    tls = UpstreamTls(
        "ISTIO_MUTUAL",
        client_cert=_sds(pod.identity),
        trusted_ca=_sds(SDS_ROOT_CA),
        subject_alt_names=tuple(sorted({u.identity for u in d.upstreams})),
        alpn=("h2",) if d.hbone else ISTIO_ALPN,
    )
    cluster: dict[str, Any] = {
        "name": d.cluster,
        "type": "STATIC",
        "connect_timeout": _CONNECT_TIMEOUT,
        "upstream_bind_config": _bind(pod, pod.ip),
        "load_assignment": _endpoints(d.cluster, [(u.address, u.port) for u in d.upstreams]),
        "transport_socket": _tls_socket(build_upstream_tls_context(tls)),
    }
    if d.hbone:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _TYPE + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _inbound_cluster(pod: AmbientPod, p: InboundPort) -> dict[str, Any]:
    return {
        "name": p.cluster,
        "type": "STATIC",
        "connect_timeout": _CONNECT_TIMEOUT,
        "upstream_bind_config": _bind(pod, INBOUND_PASSTHROUGH_SOURCE),
        "load_assignment": _endpoints(p.cluster, [(pod.ip, p.port)]),
    }


def _passthrough_cluster(pod: AmbientPod) -> dict[str, Any]:
    return {
        "name": f"ambient_passthrough|{_pod_id(pod)}",
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": _CONNECT_TIMEOUT,
        "upstream_bind_config": _bind(pod, pod.ip),
    }


def build_node_proxy(
    config: NodeProxyConfig,
) -> tuple[list[listener_pb2.Listener], list[cluster_pb2.Cluster]]:
    """The node proxy's listeners and clusters, in a stable order."""
    listeners: list[listener_pb2.Listener] = []
    blackhole = {"name": BLACKHOLE_CLUSTER, "type": "STATIC", "connect_timeout": _CONNECT_TIMEOUT}
    clusters = [json_format.ParseDict(blackhole, cluster_pb2.Cluster())] if config.pods else []
    for pod in config.pods:
        for body in (_outbound_listener(pod), _inbound_listener(pod), _hbone_listener(pod)):
            listeners.append(json_format.ParseDict(body, listener_pb2.Listener()))
        bodies = [
            *(_outbound_cluster(pod, d) for d in pod.outbound),
            *(_inbound_cluster(pod, p) for p in pod.inbound),
            _passthrough_cluster(pod),
        ]
        clusters.extend(json_format.ParseDict(b, cluster_pb2.Cluster()) for b in bodies)
    return listeners, clusters
