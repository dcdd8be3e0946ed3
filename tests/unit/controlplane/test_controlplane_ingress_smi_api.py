"""Ingress and SMI objects through the REST config API of a real control plane:
an Ingress's GET carries the status the converter computed, and SMI's TCPRoute
is addressed by its own group (its internal kind is ``SMITCPRoute``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pilotfish.api.resource import ResourceKey
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from polling import apoll

INGRESS_URL = "/apis/networking.k8s.io/v1/namespaces/default/ingresses"
WE_URL = "/apis/networking.istio.io/v1/namespaces/istio-system/workloadentries"
TCP_ROUTE_URL = "/apis/specs.smi-spec.io/v1alpha4/namespaces/default/tcproutes"

INGRESS: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {
        "name": "gateway",
        "namespace": "default",
        "annotations": {"kubernetes.io/ingress.class": "istio"},
    },
    "spec": {
        "rules": [
            {
                "http": {
                    "paths": [
                        {
                            "path": "/productpage",
                            "pathType": "Exact",
                            "backend": {
                                "service": {"name": "productpage", "port": {"number": 9080}}
                            },
                        }
                    ]
                }
            }
        ]
    },
}
GATEWAY_ENTRY: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "WorkloadEntry",
    "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
    "spec": {"address": "127.0.0.1", "labels": {"istio": "ingressgateway"}},
}


class Api:
    def __init__(self, cp: ControlPlane, session: aiohttp.ClientSession) -> None:
        self.cp = cp
        self.session = session

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.cp.api_token.reveal()}"}
        url = f"http://127.0.0.1:{self.cp.http_port}{path}"
        async with self.session.request(method, url, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    cp = ControlPlane(
        ControlPlaneSettings(
            config_paths=(str(config_dir),),
            xds_port=0,
            http_port=0,
            poll_interval=0.02,
            quiet_period=0.01,
            max_delay=0.05,
        )
    )
    await cp.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(cp, session)
    finally:
        await cp.close()


async def test_an_ingress_get_shows_its_load_balancer_status(api: Api) -> None:
    status, _ = await api.call("PUT", f"{INGRESS_URL}/gateway", INGRESS)
    assert status == 201

    async def status_is(expected: Any) -> bool:
        _, body = await api.call("GET", f"{INGRESS_URL}/gateway")
        return bool(body.get("status") == expected)

    await apoll(lambda: status_is({"loadBalancer": {}}), "an empty status", 10, ignore=())
    # The gateway's endpoint registered: its address is the Ingress's.
    assert (await api.call("PUT", f"{WE_URL}/istio-ingressgateway", GATEWAY_ENTRY))[0] == 201
    want = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
    await apoll(lambda: status_is(want), "the gateway address", 10, ignore=())
    # Listing carries it too; the derived Istio objects are not the user's to list.
    _, listed = await api.call("GET", INGRESS_URL)
    assert [i["status"] for i in listed["items"]] == [want]
    _, vs = await api.call("GET", "/apis/networking.istio.io/v1/namespaces/default/virtualservices")
    assert vs["items"] == []


async def test_an_smi_tcp_route_round_trips_under_its_group(api: Api) -> None:
    route = {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "TCPRoute",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"matches": {"ports": [5432]}},
    }
    status, body = await api.call("PUT", f"{TCP_ROUTE_URL}/db", route)
    assert status == 201, body
    assert api.cp.store.get(ResourceKey("SMITCPRoute", "default", "db")) is not None
    status, body = await api.call("GET", f"{TCP_ROUTE_URL}/db")
    assert status == 200 and body["kind"] == "TCPRoute"
    assert body["spec"] == {"matches": {"ports": [5432]}}
