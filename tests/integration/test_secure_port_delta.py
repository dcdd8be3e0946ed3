"""Delta ADS on the control plane's xDS mTLS port: the same identity binding as SotW."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from test_ca_secure_port import TIMEOUT, SecureCp, not_served, secure_cp  # noqa: F401

from pilotfish.xds.server import ADS_SERVICE
from pilotfish.xds.types import CLUSTER_TYPE

pytestmark = pytest.mark.integration

DELTA_METHOD = f"/{ADS_SERVICE}/DeltaAggregatedResources"


def _delta_call(channel: grpc.aio.Channel) -> Any:
    return channel.stream_stream(
        DELTA_METHOD,
        request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
    )()


def _first_request(namespace: str, account: str) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER_TYPE)
    request.node.id = f"{account}-1.{namespace}"
    metadata = struct_pb2.Struct()
    metadata.update({"NAMESPACE": namespace, "SERVICE_ACCOUNT": account, "ROLE": "sidecar"})
    request.node.metadata.CopyFrom(metadata)
    return request


async def _first_delta_cds(channel: grpc.aio.Channel, namespace: str, account: str) -> Any:
    call = _delta_call(channel)
    try:
        await call.write(_first_request(namespace, account))
        return await asyncio.wait_for(call.read(), TIMEOUT)
    finally:
        call.cancel()


async def test_delta_ads_with_matching_cert_is_served(secure_cp: SecureCp) -> None:  # noqa: F811
    workload = await secure_cp.workload("default", "bookinfo")
    async with secure_cp.xds_channel(workload) as channel:
        call = _delta_call(channel)
        try:
            await call.write(_first_request("default", "bookinfo"))
            response = await asyncio.wait_for(call.read(), TIMEOUT)
            assert response.type_url == CLUSTER_TYPE and response.nonce
            (status,) = secure_cp.cp.xds.status()
            assert status.protocol == "delta"
            assert status.identity == "spiffe://cluster.local/ns/default/sa/bookinfo"
        finally:
            call.cancel()


async def test_delta_ads_with_cert_of_another_identity_is_refused(
    secure_cp: SecureCp,  # noqa: F811
) -> None:
    workload = await secure_cp.workload("default", "reviews")
    async with secure_cp.xds_channel(workload) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _first_delta_cds(channel, "default", "bookinfo")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    details = info.value.details() or ""
    assert "sa/reviews" in details and "sa/bookinfo" in details


async def test_delta_ads_without_client_cert_is_refused(secure_cp: SecureCp) -> None:  # noqa: F811
    # Refused at the handshake (no stream exists), as for SotW; and the CA port,
    # which takes no client certificate, does not serve ADS at all.
    async with secure_cp.xds_channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _first_delta_cds(channel, "default", "bookinfo")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    async with secure_cp.channel() as channel:
        assert await not_served(channel, DELTA_METHOD, _first_request("default", "bookinfo"))
