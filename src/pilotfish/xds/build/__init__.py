"""Pure functions from IR to Envoy protos (xds-protos), one module per resource kind.

``build_all`` builds a whole ``ProxyConfig``; ``pack`` serializes one resource
as a deterministic ``google.protobuf.Any``; ``ProtoBuilder`` caches both per
distinct IR value so that proxies with equal configuration share the work.
"""

from __future__ import annotations

from pilotfish.xds.build.clusters import (
    BLACKHOLE_CLUSTER,
    PASSTHROUGH_CLUSTER,
    blackhole_cluster,
    build_cluster,
    passthrough_cluster,
)
from pilotfish.xds.build.endpoints import build_load_assignment
from pilotfish.xds.build.http_filters import (
    HTTP_FILTERS,
    HttpFilter,
    UnknownHttpFilterError,
    build_http_filters,
)
from pilotfish.xds.build.listeners import build_listener
from pilotfish.xds.build.network_filters import build_http_connection_manager, build_tcp_proxy
from pilotfish.xds.build.resources import (
    ProtoBuilder,
    Resource,
    build_all,
    build_resource,
    pack,
    resource_name,
    type_url_for,
)
from pilotfish.xds.build.routes import build_route_config
from pilotfish.xds.build.secrets import build_secret

__all__ = [
    "BLACKHOLE_CLUSTER",
    "HTTP_FILTERS",
    "PASSTHROUGH_CLUSTER",
    "HttpFilter",
    "ProtoBuilder",
    "Resource",
    "UnknownHttpFilterError",
    "blackhole_cluster",
    "build_all",
    "build_cluster",
    "build_http_connection_manager",
    "build_http_filters",
    "build_listener",
    "build_load_assignment",
    "build_resource",
    "build_route_config",
    "build_secret",
    "build_tcp_proxy",
    "pack",
    "passthrough_cluster",
    "resource_name",
    "type_url_for",
]
