"""A waypoint's way in: the HBONE listener callers' node proxies tunnel to.

Theory of operation. A waypoint (``translate.ambient.waypoints``) is configured
as an explicit-mode sidecar of its namespace: an HTTP proxy listener with every
service's routes (VirtualService and HTTPRoute routing, retries, faults,
timeouts, metrics reported as ``waypoint``) and the outbound clusters, which
reach the pods with Istio mTLS as a sidecar does (an ambient pod's node proxy
accepts that on the pod's inbound listener). What this module does to it:

- ``waypoint_hbone`` on 15008: TLS with the waypoint's certificate, client
  certificates required (the callers' node proxies present the calling pods'
  own), HTTP/2 CONNECT. A stream is accepted only when its target is a
  service port the waypoint serves (``host:port``, as the node proxies send
  it); any other target is refused (404), so the waypoint is no open relay.
  Before routing it, a ``set_filter_state`` filter records who calls: the
  verified certificate's SPIFFE id, the caller's peer record (the CONNECT
  request's ``x-pilotfish-peer`` header, set by its node proxy) and its
  address, all shared with the upstream connection. They are hashable objects
  so that the upstream pool is keyed by caller (see ``_caller_state``);
- each accepted stream's bytes go on, as they are, through the
  ``waypoint_http`` cluster to the HTTP proxy listener, made an Envoy
  *internal listener* of that name (in-process, no socket; the agent's
  bootstrap enables them for waypoints), whose connection inherits that filter
  state. There the app's own request is routed by its Host header;
- ``internalize`` turns the composed HTTP proxy listener into that internal
  listener and adds the AuthorizationPolicies attached to the waypoint or its
  services (``translate.ambient.waypoints.waypoint_policies``) per service,
  with their principal and namespace rules matched against the caller's
  recorded identity instead of the (internal) connection's certificate, and
  address rules against the remote address its ``original_dst`` listener
  filter restores (the connection manager trusts no ``X-Forwarded-For``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2

# Registered for the ``typed_config`` of the JSON bodies below (``ParseDict``).
from envoy.extensions.filters.http.set_filter_state.v3 import (  # noqa: F401
    set_filter_state_pb2,
)
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.internal_upstream.v3 import (  # noqa: F401
    internal_upstream_pb2,
)
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2  # noqa: F401
from envoy.type.matcher.v3 import filter_state_pb2
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
from pilotfish.peer_labels import (
    CALLER_ADDRESS_STATE,
    CALLER_PRINCIPAL_STATE,
    CALLER_RECORD_STATE,
    PEER_HEADER,
)
from pilotfish.xds.build._common import any_of
from pilotfish.xds.build.rbac import RBAC_FILTER_NAME, build_rbac
from pilotfish.xds.build.resources import pack
from pilotfish.xds.build.tls import TLS_TRANSPORT_SOCKET, build_downstream_tls_context

__all__ = [
    "HBONE_LISTENER",
    "HTTP_LISTENER",
    "build_waypoint",
    "internalize",
]

HBONE_LISTENER = "waypoint_hbone"
HTTP_LISTENER = "waypoint_http"  # the internal listener, and the cluster to it
_TYPE = "type.googleapis.com/"
# The well-known key the original_dst listener filter of an internal listener
# takes the connection's remote address from.
_REMOTE_ADDRESS_STATE = "envoy.filters.listener.original_dst.remote_ip"
_HCM = _TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_INTERNAL_UPSTREAM = (
    "envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport"
)


def _caller_state() -> dict[str, Any]:
    """Who calls, as filter state the internal listener's connection inherits."""

    def value(key: str, fmt: str) -> dict[str, Any]:
        return {
            "object_key": key,
            # Hashable, so the upstream connection pool is keyed by it: Envoy makes a
            # pool's connections with the filter state of the stream that created
            # the pool, and with plain strings every caller would share the first
            # one's pool, and so its identity.
            "factory_key": "envoy.hashable_string",
            "format_string": {"text_format_source": {"inline_string": fmt}},
            "shared_with_upstream": "ONCE",
        }

    return {
        "name": "envoy.filters.http.set_filter_state",
        "typed_config": {
            "@type": _TYPE + "envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [
                value(CALLER_PRINCIPAL_STATE, "%DOWNSTREAM_PEER_URI_SAN%"),
                value(CALLER_RECORD_STATE, f"%REQ({PEER_HEADER})%"),
                # Keys the pool by the caller's pod too (two pods of one workload
                # share a principal and a record) ...
                value(CALLER_ADDRESS_STATE, "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
                # ... whose address the internal listener's original_dst filter makes
                # its connection's remote address, for rules on source addresses.
                {
                    "object_key": _REMOTE_ADDRESS_STATE,
                    "format_string": {
                        "text_format_source": {"inline_string": "%DOWNSTREAM_REMOTE_ADDRESS%"}
                    },
                    "shared_with_upstream": "ONCE",
                },
            ],
        },
    }


def _listener(served: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    routes = [
        {
            "name": f"{host}:{port}",
            "match": {
                "connect_matcher": {},
                "headers": [{"name": ":authority", "string_match": {"exact": f"{host}:{port}"}}],
            },
            "route": {
                "cluster": HTTP_LISTENER,
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
            _caller_state(),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _TYPE + "envoy.extensions.filters.http.router.v3.Router"},
            },
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


def _internal_cluster() -> dict[str, Any]:
    raw = _TYPE + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
    upstream = _TYPE + _INTERNAL_UPSTREAM
    return {
        "name": HTTP_LISTENER,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": HTTP_LISTENER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "envoy_internal_address": {
                                        "server_listener_name": HTTP_LISTENER
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
        # Carries the filter state shared with upstream over to the internal listener.
        "transport_socket": {
            "name": "envoy.transport_sockets.internal_upstream",
            "typed_config": {
                "@type": upstream,
                "transport_socket": {
                    "name": "envoy.transport_sockets.raw_buffer",
                    "typed_config": {"@type": raw},
                },
            },
        },
    }


def build_waypoint(
    served: tuple[tuple[str, int], ...],
) -> tuple[listener_pb2.Listener, cluster_pb2.Cluster]:
    """The HBONE listener for ``served`` (hostname, port) and the cluster to the
    internal HTTP listener."""
    listener = json_format.ParseDict(_listener(served), listener_pb2.Listener())
    cluster = json_format.ParseDict(_internal_cluster(), cluster_pb2.Cluster())
    return listener, cluster


def _unpack(packed: bytes, message: Message) -> Message:
    wrapper = any_pb2.Any()
    wrapper.ParseFromString(packed)
    wrapper.Unpack(message)
    return message


def _caller_principals(principal: rbac_pb2.Principal) -> None:
    """Principal rules on the connection's certificate and peer address, in place,
    matched against the caller instead: its recorded identity (the internal
    connection has no certificate) and the remote address the internal listener
    restored (its direct peer is the HBONE listener)."""
    which = principal.WhichOneof("identifier")
    if which == "direct_remote_ip":
        cidr = address_pb2.CidrRange()
        cidr.CopyFrom(principal.direct_remote_ip)
        principal.remote_ip.CopyFrom(cidr)
    elif which == "authenticated":
        matcher = rbac_pb2.Principal.Authenticated()
        matcher.CopyFrom(principal.authenticated)
        principal.filter_state.CopyFrom(
            filter_state_pb2.FilterStateMatcher(
                key=CALLER_PRINCIPAL_STATE, string_match=matcher.principal_name
            )
        )
    elif which in ("and_ids", "or_ids"):
        for child in getattr(principal, which).ids:
            _caller_principals(child)
    elif which == "not_id":
        _caller_principals(principal.not_id)


def _waypoint_rbac(
    policies: tuple[AuthzPolicy, ...], action: Literal["DENY", "ALLOW"]
) -> rbac_filter_pb2.RBAC:
    rbac = build_rbac(policies, action)
    for policy in rbac.rules.policies.values():
        for principal in policy.principals:
            _caller_principals(principal)
    return rbac


def _http_filters(
    hcm: hcm_pb2.HttpConnectionManager, actions: list[Literal["DENY", "ALLOW"]]
) -> None:
    if not actions:
        return
    filters = list(hcm.http_filters)
    added = [
        hcm_pb2.HttpFilter(
            name=f"{RBAC_FILTER_NAME}.{a.lower()}", typed_config=any_of(rbac_filter_pb2.RBAC())
        )
        for a in actions
    ]
    del hcm.http_filters[:]
    hcm.http_filters.extend([*filters[:-1], *added, filters[-1]])  # before the router


def internalize(
    listener_bytes: bytes,
    route_bytes: bytes,
    policies: Mapping[tuple[str, int], tuple[AuthzPolicy, ...]],
) -> tuple[bytes, bytes]:
    """The waypoint's HTTP proxy listener (packed, as the generator holds it) as the
    internal listener ``waypoint_http``, and its route configuration, enforcing
    ``policies`` per service port: one RBAC filter per action in the connection
    manager, with no rules of its own (it enforces nothing), and each service's
    virtual host (``host:port``) carrying its rules (``RBACPerRoute``), so a
    policy of one service never touches another's."""
    listener = _unpack(listener_bytes, listener_pb2.Listener())
    assert isinstance(listener, listener_pb2.Listener)
    listener.name = HTTP_LISTENER
    listener.ClearField("address")
    listener.internal_listener.SetInParent()
    del listener.listener_filters[:]
    listener.listener_filters.append(
        listener_components_pb2.ListenerFilter(
            name="envoy.filters.listener.original_dst",
            typed_config=any_of(original_dst_pb2.OriginalDst()),
        )
    )
    every = [p for found in policies.values() for p in found]
    actions: list[Literal["DENY", "ALLOW"]] = [
        a for a in ("DENY", "ALLOW") if any(p.action == a for p in every)
    ]
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)  # the explicit layout's one chain
    for chain in chains:
        for network_filter in chain.filters:
            hcm = hcm_pb2.HttpConnectionManager()
            if network_filter.typed_config.Unpack(hcm):
                # The request's remote address is the connection's (the caller's,
                # restored), never one an X-Forwarded-For header claims: rules on
                # source addresses must not be forgeable by the caller.
                hcm.use_remote_address.value = True
                _http_filters(hcm, actions)
                network_filter.typed_config.CopyFrom(any_of(hcm))
    route = _unpack(route_bytes, route_pb2.RouteConfiguration())
    assert isinstance(route, route_pb2.RouteConfiguration)
    by_vhost = {f"{host}:{port}": found for (host, port), found in policies.items()}
    for vhost in route.virtual_hosts:
        found = by_vhost.get(vhost.name)
        for action in actions:
            if found and any(p.action == action for p in found):
                per_route = rbac_filter_pb2.RBACPerRoute(rbac=_waypoint_rbac(found, action))
                vhost.typed_per_filter_config[f"{RBAC_FILTER_NAME}.{action.lower()}"].CopyFrom(
                    any_of(per_route)
                )
    return pack(listener), pack(route)
