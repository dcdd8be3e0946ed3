"""Inconsistent configuration is reported, never fatal: /debug/syncz, log, counter.

A gateway whose DestinationRule names a ``credentialName`` Secret that does
not exist gets clusters fetching SDS secrets the control plane cannot send.
The real generator serves it anyway, and the real xDS server lists the
missing names under ``inconsistent`` in the proxy's status and counts the
finding once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from ads_client import AdsClient
from prometheus_client import CollectorRegistry

from pilotfish.api.loader import load_text
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.snapshot import build_snapshot
from pilotfish.xds.server import XdsServer
from pilotfish.xds.types import CLUSTER_TYPE, SECRET_TYPE

MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger, namespace: istio-system}
spec:
  hosts: [ledger.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ledger, namespace: istio-system}
spec:
  host: ledger.example.com
  trafficPolicy:
    tls: {mode: MUTUAL, credentialName: ledger-client}
"""
MISSING = [
    "kubernetes://istio-system/ledger-client",
    "kubernetes://istio-system/ledger-client-cacert",
]
GATEWAY = {"NAMESPACE": "istio-system", "ROLE": "gateway"}


def _generator(text: str) -> MeshGenerator:
    generator = MeshGenerator()
    result = load_text(text, "mesh.yaml")
    assert not [d for d in result.diagnostics if d.is_error]
    generator.set_snapshot(build_snapshot(result.resources, 1, generator.snapshot))
    return generator


@pytest.fixture
async def served() -> AsyncIterator[tuple[XdsServer, grpc.aio.Channel, CollectorRegistry]]:
    registry = CollectorRegistry()
    server = XdsServer(_generator(MESH), registry=registry)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield server, channel, registry
    finally:
        await server.close(grace=0)


def test_generator_reports_missing_secrets_once() -> None:
    generator = _generator(MESH)
    view = generator.view_of("gw.istio-system", GATEWAY)
    generator.generate(view)
    assert generator.consistency_report(view) == [{"kind": SECRET_TYPE, "missing": MISSING}]
    generator.generate(view)  # cached: the same finding is not counted again
    assert generator.inconsistent_count() == 1


def test_a_consistent_mesh_reports_nothing() -> None:
    generator = _generator(MESH.split("---")[0])
    view = generator.view_of("gw.istio-system", GATEWAY)
    generator.generate(view)
    assert generator.consistency_report(view) == []
    assert generator.inconsistent_count() == 0


async def test_syncz_lists_what_is_missing_and_metrics_count_it(
    served: tuple[XdsServer, grpc.aio.Channel, CollectorRegistry],
) -> None:
    server, channel, registry = served
    client = AdsClient(channel, "gw.istio-system", GATEWAY)
    await client.fetch(CLUSTER_TYPE)
    (status,) = server.status()
    assert status.to_json()["inconsistent"] == [{"kind": SECRET_TYPE, "missing": MISSING}]
    assert registry.get_sample_value("pilotfish_xds_inconsistent_configs_total") == 1
    client.cancel()
