"""Envoy's bootstrap configuration for one proxy, as plain JSON-ready data.

Theory of operation: the bootstrap holds only what Envoy needs before it can
talk to the control plane. Everything else (listeners, routes, clusters,
endpoints) arrives over one ADS stream to the static ``xds-grpc`` cluster.

- ``node``: id ``<name>.<namespace>``, cluster ``<canonical service>.<namespace>``;
  ``metadata`` carries the facts the control plane turns into a ``ProxyView`` (key names from
  ``pilotfish.model.proxy_view``). Ports inside metadata are strings, as in
  Istio, so that protobuf's ``Struct`` (whose numbers are doubles) never turns
  them into ``15001.0``.
- ``dynamic_resources``: ADS over incremental xDS (``DELTA_GRPC``) unless
  ``config.xds_protocol`` is ``sotw`` (``GRPC``); CDS and LDS over ADS with
  ``initial_fetch_timeout: 0s``
  so Envoy stays un-initialized (and the agent un-ready) until the control
  plane has answered, instead of going live with no configuration.
- ``admin`` listens on loopback only: it can stop Envoy and dump secrets.
- With a CA configured (``config.ca_enabled``): a static ``sds-grpc`` cluster
  (HTTP/2 over the agent's Unix socket ``<work_dir>/sds.sock``) from which Envoy
  fetches the workload certificate (``default``) and the mesh root
  (``ROOTCA``), node metadata ``WORKLOAD_CERTS: "true"``, and, with
  ``config.xds_tls``, the ``xds-grpc`` cluster dials the control plane's
  xDS mTLS port (15011): client certificate ``default``, server verified
  against ``ROOTCA`` with DNS SAN and SNI ``pilotfish-control-plane``.
- With several control-plane replicas (``config.xds_targets``) the
  ``xds-grpc`` cluster lists each as an endpoint. When the stream's replica
  dies, Envoy keeps every listener and cluster it has (xDS loss never drains
  anything), retries the stream with a short back-off, and outlier detection
  has set the failed replica aside so the retry reaches a live one; that
  replica's answer is the same configuration, so nothing changes in Envoy.
- A static Prometheus listener exposes ``/stats/prometheus`` on the stats port
  by routing to a static cluster that points at the admin port (Istio's trick),
  so scrapers never reach the rest of the admin API.

Only fields that Envoy 1.40 accepts appear here; the unit tests run
``envoy --mode validate`` on the output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pilotfish.agent.config import AgentConfig, is_ip_address
from pilotfish.agent.workload_env import service_cluster
from pilotfish.fsutil import atomic_write_text
from pilotfish.model.proxy_view import (
    META_APP_ADDRESS,
    META_APP_PORTS,
    META_AUTO_REGISTER_GROUP,
    META_INBOUND_PORT,
    META_INSTANCE_IPS,
    META_INTERCEPTION_MODE,
    META_LABELS,
    META_LOCALITY,
    META_NAMESPACE,
    META_NODE_NAME,
    META_OUTBOUND_PORT,
    META_ROLE,
    META_SERVICE_ACCOUNT,
    META_WORKLOAD_CERTS,
)
from pilotfish.sds_names import SDS_ROOT_CA, SDS_WORKLOAD_CERT

__all__ = [
    "ADMIN_CLUSTER",
    "CONTROL_PLANE_SAN",
    "SDS_CLUSTER",
    "STATS_LISTENER",
    "STATS_STAT_PREFIX",
    "XDS_CLUSTER",
    "build_bootstrap",
    "node_metadata",
    "write_bootstrap",
]

XDS_CLUSTER = "xds-grpc"
SDS_CLUSTER = "sds-grpc"
# DNS SAN (and SNI) of the control plane's serving certificate on its TLS ports.
CONTROL_PLANE_SAN = "pilotfish-control-plane"
ADMIN_CLUSTER = "prometheus_stats"
STATS_LISTENER = "prometheus_stats"
# Stat prefix of the Prometheus listener; the drain logic ignores its connections.
STATS_STAT_PREFIX = "prometheus_stats"

_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
_ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_UPSTREAM_TLS_TYPE = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
)
_HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP_OPTIONS_TYPE = "type.googleapis.com/" + _HTTP_OPTIONS_KEY
_CONNECTIONS_MONITOR_TYPE = (
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3."
    "DownstreamConnectionsConfig"
)
# A proxy should never refuse connections because of a default limit; the
# explicit (huge) limit also silences Envoy's start-up warning about having none.
_MAX_DOWNSTREAM_CONNECTIONS = 2**31 - 1


def _socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def node_metadata(config: AgentConfig) -> dict[str, Any]:
    """The node metadata the control plane reads back with ``ProxyView.from_node``."""
    metadata: dict[str, Any] = {
        META_ROLE: config.role,
        META_NAMESPACE: config.namespace,
        META_LABELS: dict(config.labels),
        META_SERVICE_ACCOUNT: config.service_account,
        META_INSTANCE_IPS: ",".join(config.ips),
        META_INTERCEPTION_MODE: config.interception,
        META_APP_ADDRESS: config.app_address,
        META_APP_PORTS: {str(target): str(app) for target, app in config.app_ports},
        META_OUTBOUND_PORT: str(config.outbound_port),
        META_INBOUND_PORT: str(config.inbound_port),
    }
    if config.ca_enabled:
        metadata[META_WORKLOAD_CERTS] = "true"
    if config.locality:
        metadata[META_LOCALITY] = config.locality
    if config.node_name:
        metadata[META_NODE_NAME] = config.node_name
    if config.workload_group:
        metadata[META_AUTO_REGISTER_GROUP] = config.workload_group
    return metadata


def _node_locality(locality: str) -> dict[str, str]:
    region, zone, subzone = [*locality.split("/", 2), "", ""][:3]
    return {"region": region, "zone": zone, "sub_zone": subzone}


def _http2_options(ping: tuple[str, str] = ("30s", "10s")) -> dict[str, Any]:
    """HTTP/2 upstream options; ``ping`` is the keepalive PING (interval, timeout)."""
    interval, timeout = ping
    return {
        _HTTP_OPTIONS_KEY: {
            "@type": _HTTP_OPTIONS_TYPE,
            "explicit_http_config": {
                "http2_protocol_options": {
                    "connection_keepalive": {"interval": interval, "timeout": timeout}
                }
            },
        }
    }


# With replicas, a replica that hangs (its host answers TCP but the process is
# stuck) is noticed by an unanswered PING within 5 + 5 s; the xDS server allows
# pings that often (xds/server/service.py).
REPLICA_XDS_PING = ("5s", "5s")


def _sds_config() -> dict[str, Any]:
    return {
        "api_config_source": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "set_node_on_first_message_only": True,
            "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}],
        },
        # Wait for the agent however long it takes rather than use no certificate.
        "initial_fetch_timeout": "0s",
        "resource_api_version": "V3",
    }


def _sds_cluster(config: AgentConfig) -> dict[str, Any]:
    return {
        "name": SDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": SDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"pipe": {"path": str(config.sds_socket_path)}}}}
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": _http2_options(),
    }


def _xds_tls_socket() -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _UPSTREAM_TLS_TYPE,
            "sni": CONTROL_PLANE_SAN,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [
                    {"name": SDS_WORKLOAD_CERT, "sds_config": _sds_config()}
                ],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": CONTROL_PLANE_SAN}}
                        ]
                    },
                    "validation_context_sds_secret_config": {
                        "name": SDS_ROOT_CA,
                        "sds_config": _sds_config(),
                    },
                },
            },
        },
    }


def _xds_cluster(config: AgentConfig) -> dict[str, Any]:
    targets = config.xds_targets
    static = all(is_ip_address(host) for host, _ in targets)
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket_address(host, port)}}
                        for host, port in targets
                    ]
                }
            ],
        },
        # The ADS stream is one long-lived HTTP/2 stream; never let default
        # circuit breakers or idle timeouts cut it.
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": 100000,
                    "max_pending_requests": 100000,
                    "max_requests": 100000,
                },
                {
                    "priority": "HIGH",
                    "max_connections": 100000,
                    "max_pending_requests": 100000,
                    "max_requests": 100000,
                },
            ]
        },
        "typed_extension_protocol_options": (
            _http2_options(REPLICA_XDS_PING) if len(targets) > 1 else _http2_options()
        ),
        "upstream_connection_options": {"tcp_keepalive": _xds_keepalive(len(targets))},
    }
    if len(targets) > 1:
        # A replica that refuses or drops connections is set aside at once, so
        # the next ADS stream goes to one that answers (Envoy retries the
        # stream with back-off; round robin alone could pick the dead one again).
        cluster["outlier_detection"] = {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 1,
            "enforcing_consecutive_local_origin_failure": 100,
            "interval": "1s",
            "base_ejection_time": "10s",
            "max_ejection_percent": 100,
        }
    if config.xds_tls:
        cluster["transport_socket"] = _xds_tls_socket()
    if not static:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def _xds_keepalive(replicas: int) -> dict[str, int]:
    """TCP keepalive of the ADS connection.

    With one control plane there is nowhere else to go: probe rarely. With
    replicas, a peer that vanished without closing the connection (a host
    powered off, a partition) is noticed after about 10 + 3 x 3 = 19 s of
    silence, and Envoy reconnects to another replica.
    """
    if replicas == 1:
        return {"keepalive_time": 300}
    return {"keepalive_time": 10, "keepalive_interval": 3, "keepalive_probes": 3}


def _stats_listener(config: AgentConfig) -> dict[str, Any]:
    return {
        "name": STATS_LISTENER,
        "stat_prefix": STATS_STAT_PREFIX,
        "address": _socket_address(config.stats_bind, config.stats_port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": _HCM_TYPE,
                            "stat_prefix": STATS_STAT_PREFIX,
                            "codec_type": "AUTO",
                            "route_config": {
                                "virtual_hosts": [
                                    {
                                        "name": "prometheus",
                                        "domains": ["*"],
                                        "routes": [
                                            {
                                                "match": {"path": "/stats/prometheus"},
                                                "route": {"cluster": ADMIN_CLUSTER},
                                            }
                                        ],
                                    }
                                ]
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {"@type": _ROUTER_TYPE},
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


def _admin_cluster(config: AgentConfig) -> dict[str, Any]:
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": _socket_address(config.admin_address, config.admin_port)
                            }
                        }
                    ]
                }
            ],
        },
    }


# Backoff of the ADS stream's reconnection (a jittered exponential backoff).
XDS_RECONNECT_BACKOFF = (("base_interval", "0.25s"), ("max_interval", "2s"))


_INTERNAL_LISTENER_TYPE = (
    "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
)


def build_bootstrap(config: AgentConfig) -> dict[str, Any]:
    """Return Envoy's bootstrap for ``config`` as JSON-ready data (pure)."""
    ads_source = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    clusters = [_xds_cluster(config)]
    if config.ca_enabled:
        clusters.insert(0, _sds_cluster(config))
    listeners: list[dict[str, Any]] = []
    if config.stats_port:
        clusters.append(_admin_cluster(config))
        listeners.append(_stats_listener(config))
    extensions: dict[str, Any] = {}
    if config.role == "waypoint":
        # Its HBONE listener hands each stream to an internal listener (in-process,
        # no socket), carrying the caller's identity as filter state.
        extensions["bootstrap_extensions"] = [
            {
                "name": "envoy.bootstrap.internal_listener",
                "typed_config": {"@type": _INTERNAL_LISTENER_TYPE},
            }
        ]
    return {
        **extensions,
        "node": {
            "id": config.proxy_id,
            # Istio's service cluster, the name spans report: canonical service
            # and namespace (``reviews.bookinfo``), shared by a service's pods.
            "cluster": service_cluster(config),
            "metadata": node_metadata(config),
            # Envoy's own idea of where it runs (stats, zone-aware features).
            **({"locality": _node_locality(config.locality)} if config.locality else {}),
        },
        "admin": {"address": _socket_address(config.admin_address, config.admin_port)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if config.xds_protocol == "delta" else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            # Reconnect soon after a control-plane restart (Envoy's
                            # default backs off up to 30 s): the proxy keeps serving
                            # its last configuration meanwhile, but changes wait.
                            "retry_policy": {"retry_back_off": dict(XDS_RECONNECT_BACKOFF)},
                        }
                    }
                ],
            },
            "cds_config": dict(ads_source),
            "lds_config": dict(ads_source),
        },
        "static_resources": {"clusters": clusters, "listeners": listeners},
        "layered_runtime": {
            "layers": [
                {
                    "name": "global config",
                    "static_layer": {
                        # Regexes in user routes may be larger than Envoy's
                        # conservative default before they count as an error.
                        "re2.max_program_size.error_level": 32768,
                    },
                },
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": _CONNECTIONS_MONITOR_TYPE,
                        "max_active_downstream_connections": _MAX_DOWNSTREAM_CONNECTIONS,
                    },
                }
            ]
        },
    }


def write_bootstrap(config: AgentConfig, path: Path) -> Path:
    """Write ``build_bootstrap(config)`` to ``path`` as JSON, atomically; return ``path``."""
    text = json.dumps(build_bootstrap(config), indent=2, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path
