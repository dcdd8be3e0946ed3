"""Names shared by the metrics build and the agent: the environment variables
the agent gives Envoy about its own workload, and the request headers a client
proxy uses to tell the server proxy who is calling and which service it called.

The variables keep the generated Envoy configuration free of workload names
(``%ENVIRONMENT(...)%`` is resolved by each Envoy), so proxies with equal views
share one configuration. The agent always sets every variable, ``unknown``
for a fact it does not have, because Envoy prints an unset variable as ``-``.
"""

from __future__ import annotations

__all__ = [
    "DEST_SERVICE_HEADER",
    "DEST_SERVICE_NAMESPACE_HEADER",
    "DEST_SERVICE_NAME_HEADER",
    "ENV_APP",
    "ENV_CANONICAL_REVISION",
    "ENV_CANONICAL_SERVICE",
    "ENV_CLUSTER",
    "ENV_NAMESPACE",
    "ENV_PRINCIPAL",
    "ENV_VERSION",
    "ENV_WORKLOAD",
    "PEER_HEADERS",
    "UNKNOWN",
]

UNKNOWN = "unknown"

ENV_WORKLOAD = "PILOTFISH_WORKLOAD_NAME"
ENV_NAMESPACE = "PILOTFISH_WORKLOAD_NAMESPACE"
ENV_APP = "PILOTFISH_WORKLOAD_APP"
ENV_VERSION = "PILOTFISH_WORKLOAD_VERSION"
ENV_CANONICAL_SERVICE = "PILOTFISH_CANONICAL_SERVICE"
ENV_CANONICAL_REVISION = "PILOTFISH_CANONICAL_REVISION"
ENV_CLUSTER = "PILOTFISH_CLUSTER_ID"
ENV_PRINCIPAL = "PILOTFISH_PRINCIPAL"

# label suffix (after "source_"/"destination_") -> (header, environment variable).
PEER_HEADERS: tuple[tuple[str, str, str], ...] = (
    ("workload", "x-pilotfish-peer-workload", ENV_WORKLOAD),
    ("workload_namespace", "x-pilotfish-peer-namespace", ENV_NAMESPACE),
    ("app", "x-pilotfish-peer-app", ENV_APP),
    ("version", "x-pilotfish-peer-version", ENV_VERSION),
    ("canonical_service", "x-pilotfish-peer-canonical-service", ENV_CANONICAL_SERVICE),
    ("canonical_revision", "x-pilotfish-peer-canonical-revision", ENV_CANONICAL_REVISION),
    ("cluster", "x-pilotfish-peer-cluster", ENV_CLUSTER),
)

# The service the client proxy routed to (set per route by the client proxy).
DEST_SERVICE_HEADER = "x-pilotfish-destination-service"
DEST_SERVICE_NAME_HEADER = "x-pilotfish-destination-service-name"
DEST_SERVICE_NAMESPACE_HEADER = "x-pilotfish-destination-service-namespace"
