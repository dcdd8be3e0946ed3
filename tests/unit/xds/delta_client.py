"""A small real delta ADS client (grpc.aio) that subscribes by difference, as Envoy does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds.server import ADS_SERVICE

__all__ = ["DELTA_METHOD", "DeltaClient"]

DELTA_METHOD = f"/{ADS_SERVICE}/DeltaAggregatedResources"


class DeltaClient:
    """One delta ADS stream. Keeps what it holds per type: name -> (version, Any bytes)."""

    def __init__(
        self, channel: grpc.aio.Channel, node_id: str, metadata: Mapping[str, Any] | None = None
    ) -> None:
        self.node_id = node_id
        self.metadata = dict(metadata or {})
        self.call: Any = channel.stream_stream(
            DELTA_METHOD,
            request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
        )()
        self._sent_first = False
        self.held: dict[str, dict[str, tuple[str, bytes]]] = {}

    async def send(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        nonce: str = "",
        error: str | None = None,
        initial: Mapping[str, str] | None = None,
    ) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
            initial_resource_versions=dict(initial or {}),
        )
        if not self._sent_first:
            req.node.id = self.node_id
            req.node.metadata.update(self.metadata)
            self._sent_first = True
        if error is not None:
            req.error_detail.code = 3
            req.error_detail.message = error
        await self.call.write(req)

    async def recv(self, timeout: float = 10.0) -> discovery_pb2.DeltaDiscoveryResponse:
        """The next response, applied to ``held`` (not yet ACKed)."""
        resp = await asyncio.wait_for(self.call.read(), timeout)
        assert resp is not grpc.aio.EOF, "stream ended"
        held = self.held.setdefault(resp.type_url, {})
        for resource in resp.resources:
            held[resource.name] = (resource.version, resource.resource.SerializeToString())
        for name in resp.removed_resources:
            held.pop(name, None)
        return resp

    async def ack(self, resp: discovery_pb2.DeltaDiscoveryResponse) -> None:
        await self.send(resp.type_url, nonce=resp.nonce)

    async def fetch(
        self, type_url: str, subscribe: Iterable[str] = (), **kwargs: Any
    ) -> discovery_pb2.DeltaDiscoveryResponse:
        """Subscribe, expect the response for that type, ACK it."""
        await self.send(type_url, subscribe, **kwargs)
        resp = await self.recv()
        assert resp.type_url == type_url, resp.type_url
        await self.ack(resp)
        return resp

    def versions(self, type_url: str) -> dict[str, str]:
        return {name: v for name, (v, _) in self.held.get(type_url, {}).items()}

    def cancel(self) -> None:
        self.call.cancel()
