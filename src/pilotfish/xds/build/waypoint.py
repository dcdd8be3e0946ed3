"""A waypoint's HBONE side: the listener callers' node proxies tunnel to.

Theory of operation. A waypoint (``translate.ambient.waypoints``) is configured
as an explicit-mode sidecar of its namespace: an HTTP proxy listener with every
service's routes (VirtualService routing, retries, faults, timeouts, metrics
reported as ``waypoint``) and the outbound clusters, which reach the pods with
Istio mTLS as a sidecar does (an ambient pod's node proxy accepts that on the
pod's inbound listener). That listener is bound on loopback in the waypoint's
own network namespace. What this module adds is the way in:

- ``waypoint_hbone`` on 15008: TLS with the waypoint's certificate, client
  certificates required (the callers' node proxies present the calling pods'
  own), HTTP/2 CONNECT. A stream is accepted only when its target is a
  service port the waypoint serves (``host:port``, as the node proxies send
  it); any other target is refused (404), so the waypoint is no open relay;
- each accepted stream's bytes go on, as they are, to the HTTP proxy listener
  through the ``waypoint_http`` cluster: the app's own HTTP request is routed
  there by its Host header;
- ``with_authz`` adds the AuthorizationPolicies attached to the waypoint or to
  its services (``translate.ambient.waypoints.waypoint_policies``) to that
  listener, per service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from pilotfish.ir.security import (
    SDS_ROOT_CA,
    SDS_WORKLOAD_CERT,
    AuthzPolicy,
    CertSource,
    DownstreamTls,
)
from pilotfish.model.ambient import HBONE_PORT
from pilotfish.xds.build._common import any_of
from pilotfish.xds.build.rbac import RBAC_FILTER_NAME, build_rbac
from pilotfish.xds.build.resources import pack
from pilotfish.xds.build.tls import TLS_TRANSPORT_SOCKET, build_downstream_tls_context

__all__ = ["HBONE_LISTENER", "LOOP_CLUSTER", "build_waypoint", "with_authz"]

HBONE_LISTENER = "waypoint_hbone"
LOOP_CLUSTER = "waypoint_http"
_TYPE = "type.googleapis.com/"
_HCM = _TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def _listener(served: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    routes = [
        {
            "name": f"{host}:{port}",
            "match": {
                "connect_matcher": {},
                "headers": [{"name": ":authority", "string_match": {"exact": f"{host}:{port}"}}],
            },
            "route": {
                "cluster": LOOP_CLUSTER,
                "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}],
            },
        }
        for host, port in served
    ]
    hcm = {
        "@type": _HCM,
        "stat_prefix": HBONE_LISTENER,
        "codec_type": "HTTP2",
        "http2_protocol_options": {"allow_connect": True},
        "upgrade_configs": [{"upgrade_type": "CONNECT"}],
        "route_config": {
            "name": HBONE_LISTENER,
            "virtual_hosts": [{"name": "hbone", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _TYPE + "envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    tls = DownstreamTls(
        server_cert=CertSource(sds=SDS_WORKLOAD_CERT),
        trusted_ca=CertSource(sds=SDS_ROOT_CA),
        require_client_cert=True,
        alpn=("h2",),
    )
    context = build_downstream_tls_context(tls)
    return {
        "name": HBONE_LISTENER,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": HBONE_PORT}},
        "filter_chains": [
            {
                "transport_socket": {
                    "name": TLS_TRANSPORT_SOCKET,
                    "typed_config": {
                        "@type": _TYPE + context.DESCRIPTOR.full_name,
                        **json_format.MessageToDict(context),
                    },
                },
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ],
            }
        ],
    }


def _loop_cluster(address: str, port: int) -> dict[str, Any]:
    return {
        "name": LOOP_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": LOOP_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": address, "port_value": port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def build_waypoint(
    served: tuple[tuple[str, int], ...], http_address: str, http_port: int
) -> tuple[listener_pb2.Listener, cluster_pb2.Cluster]:
    """The HBONE listener for ``served`` (hostname, port) and the cluster to the HTTP
    proxy listener on ``http_address:http_port``."""
    listener = json_format.ParseDict(_listener(served), listener_pb2.Listener())
    cluster = json_format.ParseDict(_loop_cluster(http_address, http_port), cluster_pb2.Cluster())
    return listener, cluster


def _unpack(packed: bytes, message: Message) -> Message:
    wrapper = any_pb2.Any()
    wrapper.ParseFromString(packed)
    wrapper.Unpack(message)
    return message


def with_authz(
    listener_bytes: bytes,
    route_bytes: bytes,
    policies: Mapping[tuple[str, int], tuple[AuthzPolicy, ...]],
) -> tuple[bytes, bytes]:
    """The waypoint's HTTP proxy listener and route configuration (packed, as the
    generator holds them) enforcing ``policies`` per service port: one RBAC filter
    per action in the connection manager, with no rules of its own (it enforces
    nothing), and each service's virtual host (``host:port``) carrying its rules
    (``RBACPerRoute``), so a policy of one service never touches another's."""
    actions = [
        a for a in ("DENY", "ALLOW") if any(p.action == a for v in policies.values() for p in v)
    ]
    if not actions:
        return listener_bytes, route_bytes
    listener = _unpack(listener_bytes, listener_pb2.Listener())
    assert isinstance(listener, listener_pb2.Listener)
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)  # the explicit layout's one chain
    for chain in chains:
        for network_filter in chain.filters:
            hcm = hcm_pb2.HttpConnectionManager()
            if not network_filter.typed_config.Unpack(hcm):
                continue
            filters = list(hcm.http_filters)
            added = [
                hcm_pb2.HttpFilter(
                    name=f"{RBAC_FILTER_NAME}.{a.lower()}",
                    typed_config=any_of(rbac_filter_pb2.RBAC()),
                )
                for a in actions
            ]
            del hcm.http_filters[:]
            hcm.http_filters.extend([*filters[:-1], *added, filters[-1]])  # before the router
            network_filter.typed_config.CopyFrom(any_of(hcm))
    route = _unpack(route_bytes, route_pb2.RouteConfiguration())
    assert isinstance(route, route_pb2.RouteConfiguration)
    by_vhost = {f"{host}:{port}": found for (host, port), found in policies.items()}
    for vhost in route.virtual_hosts:
        found = by_vhost.get(vhost.name)
        if not found:
            continue
        for action in actions:
            if any(p.action == action for p in found):
                per_route = rbac_filter_pb2.RBACPerRoute(rbac=build_rbac(found, action))
                vhost.typed_per_filter_config[f"{RBAC_FILTER_NAME}.{action.lower()}"].CopyFrom(
                    any_of(per_route)
                )
    return pack(listener), pack(route)
