"""Outbound traffic policy and Sidecar scoping, observed through a real sidecar.

The control plane runs with a mesh config of ``outboundTrafficPolicy:
REGISTRY_ONLY``. Backends are echo apps on loopback that the sidecar reaches
directly (WorkloadEntry / ServiceEntry STATIC endpoints), so only the client's
Envoy is involved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from meshkit import Mesh, poll

from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.model.mesh_config import parse_mesh_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec: {{selector: {{app: reviews}}, ports: [{{name: http, port: 9080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: ratings, namespace: default}}
spec: {{selector: {{app: ratings}}, ports: [{{name: http, port: 9080}}]}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-1, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: reviews}}, ports: {{http: {reviews}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings-1, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: ratings}}, ports: {{http: {ratings}}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: default}}
spec:
  hosts: [api.external.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {external}}}}}]
"""

SIDECAR = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: ["./reviews.default.svc.cluster.local"]
"""


@pytest.fixture
async def registry_only_mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    config = tmp_path / "config"
    config.mkdir()
    mesh = Mesh(tmp_path, config)
    settings = ControlPlaneSettings(
        config_paths=(str(config),),
        xds_port=0,
        http_port=0,
        poll_interval=0.05,
        mesh=parse_mesh_config("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"),
    )
    try:
        mesh.cp = ControlPlane(settings)
        await mesh.cp.start()
        mesh.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield mesh
    finally:
        await mesh.close()


def _clusters(dump: dict[str, Any]) -> set[str]:
    return {r["name"] for r in dump["types"]["CDS"]["resources"]}


async def test_registry_only_and_sidecar_scoping(registry_only_mesh: Mesh) -> None:
    mesh = registry_only_mesh
    ports = {name: await mesh.app(name, "v1") for name in ("reviews", "ratings", "external")}
    mesh.write("mesh.yaml", SERVICES.format(**ports))
    client = mesh.agent("productpage", labels={"app": "productpage"})
    await mesh.ready(client)

    async def status(host: str) -> int:
        code, body = await mesh.call(client, host)
        if code == 200:
            assert isinstance(body, dict)
            expected = host.split(".")[0].split(":")[0]
            assert body["service"] == ("external" if expected == "api" else expected)
        return code

    async def checked(host: str) -> int:
        """``status``, once converged: `pilotfish explain` predicts the same answer."""
        code = await status(host)
        outcome = await mesh.explain(client, f"http://{host}/")
        assert (outcome["status"] or 200) == code, (host, code, outcome)
        return code

    async def all_reachable() -> bool:
        return all(
            [await status(h) == 200 for h in ("reviews:9080", "ratings:9080")]
            + [await status("api.external.test:80") == 200]
        )

    await poll(all_reachable, "registry services and the ServiceEntry host reachable")
    for host in ("reviews:9080", "ratings:9080", "api.external.test:80"):
        assert await checked(host) == 200
    # REGISTRY_ONLY: a host outside the registry gets 502 (not passed through, not 404).
    assert await checked("nosuch.example.com:80") == 502
    assert await checked("nosuch:9080") == 502

    dump = await mesh.get_json(f"/debug/config_dump?proxy={client.proxy_id}")
    before = _clusters(dump)
    assert "outbound|9080||ratings.default.svc.cluster.local" in before

    # A namespace Sidecar that only lets the proxy see reviews.
    mesh.write("sidecar.yaml", SIDECAR)

    async def ratings_gone() -> bool:
        return await status("ratings:9080") == 502

    await poll(ratings_gone, "ratings unreachable once the Sidecar applies")
    assert await checked("ratings:9080") == 502
    assert await checked("reviews:9080") == 200
    assert await checked("api.external.test:80") == 502

    async def cds_shrunk() -> set[str] | None:
        got = _clusters(await mesh.get_json(f"/debug/config_dump?proxy={client.proxy_id}"))
        return got if len(got) < len(before) else None

    after = await poll(cds_shrunk, "a smaller CDS")
    assert "outbound|9080||reviews.default.svc.cluster.local" in after
    assert not any("ratings" in name or "external" in name for name in after)
