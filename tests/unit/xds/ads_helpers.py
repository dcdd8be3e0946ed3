"""Builders of small, real xDS resources for the xDS server tests."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2

from pilotfish.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ResourceSet,
)

__all__ = ["cla", "cluster", "listener", "pack", "route", "sets_of"]


def pack(message: object) -> bytes:
    any_msg = any_pb2.Any()
    any_msg.Pack(message)
    return bytes(any_msg.SerializeToString())


def cluster(name: str, timeout_s: int = 1) -> bytes:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = timeout_s
    c.eds_cluster_config.eds_config.ads.SetInParent()
    return pack(c)


def cla(name: str, port: int = 8080, address: str = "127.0.0.1") -> bytes:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    lb = assignment.endpoints.add().lb_endpoints.add()
    sock = lb.endpoint.address.socket_address
    sock.address = address
    sock.port_value = port
    return pack(assignment)


def listener(name: str, port: int = 15001) -> bytes:
    lis = listener_pb2.Listener(name=name)
    lis.address.socket_address.address = "127.0.0.1"
    lis.address.socket_address.port_value = port
    return pack(lis)


def route(name: str, cluster_name: str = "c") -> bytes:
    rc = route_pb2.RouteConfiguration(name=name)
    vh = rc.virtual_hosts.add(name="vh", domains=["*"])
    r = vh.routes.add()
    r.match.prefix = "/"
    r.route.cluster = cluster_name
    return pack(rc)


def sets_of(
    clusters: Iterable[str] = ("c1", "c2"),
    endpoints: dict[str, int] | None = None,
    listeners: Iterable[str] = ("l1",),
    routes: Iterable[str] = ("r1",),
) -> dict[str, ResourceSet]:
    """A full set of the four ADS types; endpoints maps cluster name to port."""
    eps = endpoints if endpoints is not None else {"c1": 8080, "c2": 8081}
    return {
        CLUSTER_TYPE: ResourceSet(CLUSTER_TYPE, {n: cluster(n) for n in clusters}),
        ENDPOINT_TYPE: ResourceSet(ENDPOINT_TYPE, {n: cla(n, p) for n, p in eps.items()}),
        LISTENER_TYPE: ResourceSet(LISTENER_TYPE, {n: listener(n) for n in listeners}),
        ROUTE_TYPE: ResourceSet(ROUTE_TYPE, {n: route(n) for n in routes}),
    }
