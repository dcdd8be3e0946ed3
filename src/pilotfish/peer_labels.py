"""Names shared by the metrics build and the agent: the environment variables
the agent gives Envoy about its own workload, and the request headers a client
proxy uses to tell the server proxy who is calling and which service it called.

The variables keep the generated Envoy configuration free of workload names
(``%ENVIRONMENT(...)%`` is resolved by each Envoy), so proxies with equal views
share one configuration. The agent always sets every variable, ``unknown``
for a fact it does not have, because Envoy prints an unset variable as ``-``.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "CALLER_ADDRESS_STATE",
    "CALLER_PRINCIPAL_STATE",
    "CALLER_RECORD_STATE",
    "DEFAULT_CLUSTER_ID",
    "DEST_SERVICE_HEADER",
    "DEST_SERVICE_NAMESPACE_HEADER",
    "DEST_SERVICE_NAME_HEADER",
    "ENDPOINT_RECORD_KEY",
    "ENV_APP",
    "ENV_CANONICAL_REVISION",
    "ENV_CANONICAL_SERVICE",
    "ENV_CLUSTER",
    "ENV_NAMESPACE",
    "ENV_PEER",
    "ENV_PRINCIPAL",
    "ENV_VERSION",
    "ENV_WORKLOAD",
    "OWN_LABELS",
    "OWN_VARIABLES",
    "PEER_HEADER",
    "PEER_HEADERS",
    "PEER_SUFFIXES",
    "UNKNOWN",
    "UPSTREAM_METADATA_NAMESPACE",
    "endpoint_record",
    "parse_peer_record",
    "peer_record",
    "workload_facts",
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
# All of the workload's facts above but the principal, as one record (``peer_record``).
ENV_PEER = "PILOTFISH_PEER"

# label suffix (after "source_"/"destination_") -> (header, environment variable).
# The headers are not sent any more (the record is, ``PEER_HEADER``); a client
# proxy takes them off what its app sends, as it always did.
PEER_HEADERS: tuple[tuple[str, str, str], ...] = (
    ("workload", "x-pilotfish-peer-workload", ENV_WORKLOAD),
    ("workload_namespace", "x-pilotfish-peer-namespace", ENV_NAMESPACE),
    ("app", "x-pilotfish-peer-app", ENV_APP),
    ("version", "x-pilotfish-peer-version", ENV_VERSION),
    ("canonical_service", "x-pilotfish-peer-canonical-service", ENV_CANONICAL_SERVICE),
    ("canonical_revision", "x-pilotfish-peer-canonical-revision", ENV_CANONICAL_REVISION),
    ("cluster", "x-pilotfish-peer-cluster", ENV_CLUSTER),
)
PEER_SUFFIXES: tuple[str, ...] = tuple(suffix for suffix, _h, _v in PEER_HEADERS)
# The one header a client proxy tells the server proxy who is calling with:
# the record of ``ENV_PEER``.
PEER_HEADER = "x-pilotfish-peer"
# Filter state a waypoint's HBONE listener records the caller in, for the
# connection manager behind it (``xds.build.waypoint``): its SPIFFE id, its record,
# its address.
CALLER_PRINCIPAL_STATE = "pilotfish.caller_principal"
CALLER_RECORD_STATE = "pilotfish.caller_record"
CALLER_ADDRESS_STATE = "pilotfish.caller_address"

# Every variable about the proxy's own workload (the agent sets them all).
OWN_VARIABLES: frozenset[str] = frozenset({*(var for _s, _h, var in PEER_HEADERS), ENV_PRINCIPAL})
# Istio label -> the variable holding its value when the label is about the proxy itself.
OWN_LABELS: Mapping[str, str] = {
    f"{side}_{suffix}": var
    for side in ("source", "destination")
    for suffix, var in (*((s, v) for s, _h, v in PEER_HEADERS), ("principal", ENV_PRINCIPAL))
}

# The service the client proxy routed to (set per route by the client proxy).
DEST_SERVICE_HEADER = "x-pilotfish-destination-service"
DEST_SERVICE_NAME_HEADER = "x-pilotfish-destination-service-name"
DEST_SERVICE_NAMESPACE_HEADER = "x-pilotfish-destination-service-namespace"

# Istio's cluster id when none is configured.
DEFAULT_CLUSTER_ID = "Kubernetes"
# Endpoint metadata namespace and key holding the facts of each endpoint's workload
# (``endpoint_record``): the source proxy's labels of the destination.
UPSTREAM_METADATA_NAMESPACE = "istio"
ENDPOINT_RECORD_KEY = "peer"


def _first(labels: Mapping[str, str], *keys: str) -> str:
    return next((labels[k] for k in keys if labels.get(k)), "")


def workload_facts(
    workload: str, namespace: str, labels: Mapping[str, str], cluster_id: str = DEFAULT_CLUSTER_ID
) -> dict[str, str]:
    """Suffix (``workload``, ``app`` ... as in PEER_HEADERS) -> value for a workload,
    with Istio's label precedence; a fact that is not known is ``unknown``."""
    app = _first(labels, "app", "app.kubernetes.io/name")
    version = _first(labels, "version", "app.kubernetes.io/version")
    return {
        "workload": workload or UNKNOWN,
        "workload_namespace": namespace or UNKNOWN,
        "app": app or UNKNOWN,
        "version": version or UNKNOWN,
        # Istio: the canonical-name label, else app, else the workload's name.
        "canonical_service": _first(labels, "service.istio.io/canonical-name")
        or app
        or workload
        or UNKNOWN,
        "canonical_revision": _first(labels, "service.istio.io/canonical-revision")
        or version
        or "latest",
        "cluster": cluster_id or UNKNOWN,
    }


def peer_record(facts: Mapping[str, str]) -> str:
    """``workload=reviews-v1,workload_namespace=default,...``: the facts (keyed by
    the PEER_HEADERS suffixes) in one header value. Each value is a name or a
    label value, which holds neither ``,`` nor ``=``."""
    return ",".join(f"{suffix}={facts.get(suffix, UNKNOWN)}" for suffix in PEER_SUFFIXES)


def endpoint_record(facts: Mapping[str, str]) -> str:
    """``reviews-v1;default;reviews;v1;reviews;v1;Kubernetes``: the facts' values
    alone, in PEER_SUFFIXES order, for the metadata of an endpoint
    (``ENDPOINT_RECORD_KEY``). Every endpoint of every load assignment carries
    one, so it is half the bytes of the keyed form, the way Istio packs its own
    endpoint metadata. Values are names and label values, which hold no ``;``."""
    return ";".join(facts.get(suffix, UNKNOWN) for suffix in PEER_SUFFIXES)


def parse_peer_record(text: str) -> dict[str, str]:
    """The facts of a record (``peer_record``, or ``endpoint_record``'s form):
    known suffixes only, the first of each; a fact it lacks is missing from the
    result, and so is every fact of a positional record of the wrong length."""
    if "=" not in text:
        values = text.split(";")
        if len(values) != len(PEER_SUFFIXES):
            return {}
        return {suffix: value for suffix, value in zip(PEER_SUFFIXES, values, strict=True) if value}
    facts: dict[str, str] = {}
    for part in text.split(","):
        suffix, sep, value = part.partition("=")
        if sep and suffix in PEER_SUFFIXES and suffix not in facts:
            facts[suffix] = value
    return facts
