"""IR endpoints -> Envoy ``ClusterLoadAssignment`` protos."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import wrappers_pb2

from pilotfish import ir
from pilotfish.peer_labels import ENDPOINT_RECORD_KEY, UPSTREAM_METADATA_NAMESPACE, endpoint_record

# Endpoint metadata that a cluster's ``transport_socket_matches`` select on.
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
TLS_MODE_ISTIO = "istio"
__all__ = [
    "TLS_MODE_ISTIO",
    "TRANSPORT_SOCKET_MATCH",
    "build_lb_endpoint",
    "build_load_assignment",
    "build_locality",
    "endpoints_assignment",
    "socket_address",
]


def socket_address(address: str, port: int) -> address_pb2.Address:
    """``{socket_address: {address, port_value}}`` (TCP)."""
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def build_locality(locality: str) -> base_pb2.Locality:
    """``"region/zone/subzone"`` (any suffix may be missing) as a ``Locality``."""
    region, zone, subzone = ([*locality.split("/", 2), "", ""])[:3]
    return base_pb2.Locality(region=region, zone=zone, sub_zone=subzone)


def build_lb_endpoint(endpoint: ir.Endpoint) -> ec_pb2.LbEndpoint:
    """One endpoint with its load-balancing weight; an endpoint that accepts mesh
    mTLS carries ``envoy.transport_socket_match: {tlsMode: istio}`` (auto mTLS)."""
    proto = ec_pb2.LbEndpoint(
        endpoint=ec_pb2.Endpoint(address=socket_address(endpoint.address, endpoint.port)),
        load_balancing_weight=wrappers_pb2.UInt32Value(value=endpoint.weight),
    )
    if endpoint.tls_mode:
        fields = proto.metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].fields
        fields["tlsMode"].string_value = endpoint.tls_mode
    if endpoint.workload:
        # The source proxy's destination_* metric labels (``stats.py``): facts from
        # the control plane, so a destination cannot claim to be someone else.
        facts = proto.metadata.filter_metadata[UPSTREAM_METADATA_NAMESPACE].fields
        facts[ENDPOINT_RECORD_KEY].string_value = endpoint_record(dict(endpoint.workload))
    return proto


def endpoints_assignment(
    cluster_name: str, endpoints: Iterable[ir.Endpoint]
) -> endpoint_pb2.ClusterLoadAssignment:
    """A load assignment grouping ``endpoints`` by locality.

    Groups are ordered by locality string and endpoints keep their order inside
    a group, so the output depends only on the input sequence.
    """
    groups: dict[str, list[ir.Endpoint]] = {}
    for endpoint in endpoints:
        groups.setdefault(endpoint.locality, []).append(endpoint)
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    for locality in sorted(groups):
        group = assignment.endpoints.add(
            lb_endpoints=[build_lb_endpoint(e) for e in groups[locality]]
        )
        if locality:
            group.locality.CopyFrom(build_locality(locality))
    return assignment


def build_load_assignment(cla: ir.ClusterLoadAssignment) -> endpoint_pb2.ClusterLoadAssignment:
    """The EDS resource for ``cla`` (an empty ``endpoints`` list is valid: no hosts).

    Explicit ``localities`` (locality load balancing) keep their order, priority
    and weight; otherwise endpoints are grouped by locality.
    """
    if not cla.localities:
        return endpoints_assignment(cla.cluster_name, cla.endpoints)
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=cla.cluster_name)
    for loc in cla.localities:
        group = assignment.endpoints.add(
            lb_endpoints=[build_lb_endpoint(e) for e in loc.endpoints], priority=loc.priority
        )
        if loc.locality:
            group.locality.CopyFrom(build_locality(loc.locality))
        if loc.weight is not None:
            group.load_balancing_weight.value = loc.weight
    return assignment
