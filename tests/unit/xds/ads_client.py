"""A small real ADS client (grpc.aio) that speaks to the server like Envoy does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds.server import ADS_METHOD
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE

__all__ = ["AdsClient", "resource_names"]

_MESSAGES: dict[str, Any] = {
    CLUSTER_TYPE: cluster_pb2.Cluster,
    ENDPOINT_TYPE: endpoint_pb2.ClusterLoadAssignment,
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_TYPE: route_pb2.RouteConfiguration,
    SECRET_TYPE: secret_pb2.Secret,
}


def resource_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    """Names of the resources in a response, in order."""
    names = []
    for any_msg in resp.resources:
        msg = _MESSAGES[any_msg.type_url]()
        assert any_msg.Unpack(msg)
        names.append(msg.cluster_name if any_msg.type_url == ENDPOINT_TYPE else msg.name)
    return names


class AdsClient:
    """One ADS stream. Tracks the latest nonce, subscription and ACKed version per type."""

    def __init__(
        self, channel: grpc.aio.Channel, node_id: str, metadata: Mapping[str, Any] | None = None
    ) -> None:
        self.node_id = node_id
        self.metadata = dict(metadata or {})
        self.call: Any = channel.stream_stream(
            ADS_METHOD,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )()
        self._sent_first = False
        self.nonces: dict[str, str] = {}
        self.acked: dict[str, str] = {}
        self.names: dict[str, tuple[str, ...]] = {}
        self._probe = 0

    async def request(
        self,
        type_url: str,
        names: Iterable[str] | None = None,
        *,
        nonce: str | None = None,
        version: str | None = None,
        error: str | None = None,
    ) -> None:
        if names is not None:
            self.names[type_url] = tuple(names)
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=self.names.get(type_url, ()),
            response_nonce=self.nonces.get(type_url, "") if nonce is None else nonce,
            version_info=self.acked.get(type_url, "") if version is None else version,
        )
        if not self._sent_first:
            req.node.id = self.node_id
            req.node.metadata.update(self.metadata)
            self._sent_first = True
        if error is not None:
            req.error_detail.code = 3
            req.error_detail.message = error
        await self.call.write(req)

    async def recv(self, timeout: float = 10.0) -> discovery_pb2.DiscoveryResponse:
        resp = await asyncio.wait_for(self.call.read(), timeout)
        assert resp is not grpc.aio.EOF, "stream ended"
        self.nonces[resp.type_url] = resp.nonce
        return resp

    async def ack(self, resp: discovery_pb2.DiscoveryResponse) -> None:
        self.acked[resp.type_url] = resp.version_info
        await self.request(resp.type_url)

    async def nack(self, resp: discovery_pb2.DiscoveryResponse, message: str) -> None:
        await self.request(resp.type_url, error=message)

    async def fetch(
        self, type_url: str, names: Iterable[str] = ()
    ) -> discovery_pb2.DiscoveryResponse:
        """Subscribe, expect the response for that type, ACK it."""
        await self.request(type_url, names)
        resp = await self.recv()
        assert resp.type_url == type_url
        await self.ack(resp)
        return resp

    async def subscribe_all(
        self, eds: Iterable[str] = ("a", "b"), rds: Iterable[str] = ("r1",)
    ) -> dict[str, discovery_pb2.DiscoveryResponse]:
        """The Envoy start-up dance: CDS, EDS, LDS, RDS, each ACKed."""
        return {
            CLUSTER_TYPE: await self.fetch(CLUSTER_TYPE),
            ENDPOINT_TYPE: await self.fetch(ENDPOINT_TYPE, eds),
            LISTENER_TYPE: await self.fetch(LISTENER_TYPE),
            ROUTE_TYPE: await self.fetch(ROUTE_TYPE, rds),
        }

    async def probe(self) -> None:
        """Prove nothing else is queued: a new EDS name must be the very next response.

        The server answers requests in order on one stream, so any response it
        planned earlier (a resend, a push) would arrive before the probe's.
        """
        self._probe += 1
        name = f"probe{self._probe}"
        await self.request(ENDPOINT_TYPE, (*self.names.get(ENDPOINT_TYPE, ()), name))
        resp = await self.recv()
        assert resp.type_url == ENDPOINT_TYPE, f"unexpected {resp.type_url} before probe"
        assert resource_names(resp) == [name]
        await self.ack(resp)

    def cancel(self) -> None:
        self.call.cancel()
