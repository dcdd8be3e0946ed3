"""The client proxy's peer headers: who is calling, and which service it called.

A source-reporting proxy (sidecar outbound, gateway) overwrites, on every
request, the ``x-pilotfish-peer`` header with its own workload's facts as one
record (``workload=...,app=...``: ``%ENVIRONMENT(PILOTFISH_PEER)%``, set by its
agent; one header costs Envoy a fraction of seven, ``bench/stats_tags_cost.py``)
and, per route, the ``x-pilotfish-destination-service*`` headers with the
service the route's cluster belongs to. Whatever the app sent under those
names is replaced, and the per-fact ``x-pilotfish-peer-*`` headers of earlier
versions are removed, so an app cannot pose as another workload.

The server proxy moves them, on every inbound connection manager, into the
request's dynamic metadata (namespace ``pilotfish.peer``) and removes them
from the request, so the app never sees them; its stats loggers read the
metadata, and believe it only on mTLS chains (``xds/build/stats.py``).
"""

from __future__ import annotations

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2 as hm_pb2
from envoy.extensions.filters.http.header_to_metadata.v3 import (
    header_to_metadata_pb2 as h2m_pb2,
)

from pilotfish import ir
from pilotfish.peer_labels import (
    DEST_SERVICE_HEADER,
    DEST_SERVICE_NAME_HEADER,
    DEST_SERVICE_NAMESPACE_HEADER,
    ENV_PEER,
    PEER_HEADER,
    PEER_HEADERS,
    UNKNOWN,
)

__all__ = [
    "PEER_HEADERS_FILTER",
    "PEER_METADATA_FILTER",
    "PEER_METADATA_NAMESPACE",
    "build_peer_headers",
    "build_peer_metadata",
    "build_route_service_headers",
    "peer_metadata",
]

PEER_HEADERS_FILTER = "envoy.filters.http.header_mutation.peer"
PEER_METADATA_FILTER = "envoy.filters.http.header_to_metadata.peer"
PEER_METADATA_NAMESPACE = "pilotfish.peer"

# Every header a client proxy sets for the server proxy.
_ALL_HEADERS = (
    PEER_HEADER,
    DEST_SERVICE_HEADER,
    DEST_SERVICE_NAME_HEADER,
    DEST_SERVICE_NAMESPACE_HEADER,
)


def peer_metadata(header: str) -> str:
    """The command operator reading ``header``'s value on the server side."""
    return f"%DYNAMIC_METADATA({PEER_METADATA_NAMESPACE}:{header})%"


def build_peer_metadata() -> h2m_pb2.Config:
    """Inbound: each peer header into dynamic metadata, and out of the request."""
    rules = []
    for header in _ALL_HEADERS:
        rule = h2m_pb2.Config.Rule(header=header, remove=True)
        present = rule.on_header_present
        present.metadata_namespace = PEER_METADATA_NAMESPACE
        present.key = header
        present.type = h2m_pb2.Config.STRING
        rules.append(rule)
    return h2m_pb2.Config(request_rules=rules)


def _overwrite(key: str, value: str) -> mutation_rules_pb2.HeaderMutation:
    return mutation_rules_pb2.HeaderMutation(
        append=base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, value=value),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
    )


def build_peer_headers() -> hm_pb2.HeaderMutation:
    """Listener level: the caller's workload record, from the proxy's environment;
    the per-fact headers of earlier versions are taken off what the app sent."""
    mutations = hm_pb2.Mutations(
        request_mutations=[
            _overwrite(PEER_HEADER, f"%ENVIRONMENT({ENV_PEER})%"),
            *(
                mutation_rules_pb2.HeaderMutation(remove=header)
                for _suffix, header, _var in PEER_HEADERS
            ),
        ]
    )
    return hm_pb2.HeaderMutation(mutations=mutations)


def _service_of(route: ir.Route) -> str | None:
    """The service host of the route's first outbound cluster (None if it has none)."""
    action = route.action
    if not isinstance(action, ir.ForwardAction) or not action.clusters:
        return None
    parts = action.clusters[0].cluster.split("|")
    if len(parts) != 4 or parts[0] != "outbound":
        return None
    return parts[3]


def build_route_service_headers(route: ir.Route) -> hm_pb2.HeaderMutationPerRoute | None:
    """Per route: the called service (``reviews.default.svc.cluster.local``), its
    short name and namespace (``unknown`` for a host outside the registry's form)."""
    host = _service_of(route)
    if host is None:
        return None
    labels = host.split(".")
    name, namespace = (labels[0], labels[1]) if ".svc." in host else (host, UNKNOWN)
    mutations = hm_pb2.Mutations(
        request_mutations=[
            _overwrite(DEST_SERVICE_HEADER, host),
            _overwrite(DEST_SERVICE_NAME_HEADER, name),
            _overwrite(DEST_SERVICE_NAMESPACE_HEADER, namespace),
        ]
    )
    return hm_pb2.HeaderMutationPerRoute(mutations=mutations)
