"""The runtime's deployer starts, updates and stops one gateway agent per deployed Gateway.

The pod network is the real explicit one (loopback addresses, IPAM); the
agent is a stand-in process (no control plane or Envoy needed here: the
end-to-end tests run the real one), so these tests check the deployer's own
decisions: addresses, registrations, state, and when an agent is restarted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.runtime.gateway_deployments import (
    DeployerHooks,
    GatewayDeployer,
    recorded_deployments,
)
from pilotfish.runtime.gateways import GatewayProcess, GatewaySpec
from pilotfish.runtime.network.explicit import ExplicitNetwork
from pilotfish.runtime.state import MeshState
from pilotfish.store import MemoryStore


class _StandInGateway(GatewayProcess):
    """A gateway whose agent is a process that just waits to be stopped."""

    def argv(self) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(600)"]


def _gateway(ports: tuple[int, ...] = (80,), annotations: str = "") -> Resource:
    listeners = "".join(
        f"  - name: l{port}\n    port: {port}\n    protocol: HTTP\n" for port in ports
    )
    text = (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        f"metadata:\n  name: web\n  namespace: shop\n{annotations}"
        f"spec:\n  gatewayClassName: istio\n  listeners:\n{listeners}"
    )
    result = load_text(text, "gateway.yaml")
    assert result.ok, result.diagnostics
    return result.resources[0]


class _Harness:
    def __init__(self, tmp: Path) -> None:
        self.network = ExplicitNetwork("127.83.0.0/24")
        self.registrations = MemoryStore()
        self.gateways: list[GatewayProcess] = []
        self.state = MeshState()
        self.identities: list[tuple[str, str, str]] = []
        self.forgotten: list[str] = []
        self.saves = 0
        self._tmp = tmp

        self.progress: list[str] = []

        def make(spec: GatewaySpec, account: str, role: str) -> GatewayProcess:
            assert role in ("gateway", "waypoint")
            return _StandInGateway(
                spec,
                "127.0.0.1:1",
                tmp / "logs",
                tmp / "work",
                sys.executable,
                service_account=account,
            )

        def save() -> None:
            self.saves += 1

        self.deployer = GatewayDeployer(
            DeployerHooks(
                network=lambda: self.network,
                registrations=self.registrations,
                gateways=self.gateways,
                state=self.state,
                make_process=make,
                register_identity=lambda ns, sa, owner: self.identities.append((ns, sa, owner)),
                forget_identity=self.forgotten.append,
                save=save,
                progress=self.progress.append,
                transparent=False,
            )
        )

    def pid(self) -> int:
        gw = self.deployer.process("web-istio.shop")
        assert gw is not None and gw.pid is not None
        return gw.pid

    def service_ports(self) -> dict[str, int]:
        svc = self.registrations.get(ResourceKey("Service", "shop", "web-istio"))
        assert svc is not None
        return {p.name or "": p.port for p in svc.spec.ports}  # type: ignore[attr-defined]


async def test_a_gateway_gets_an_agent_an_address_a_service_and_a_state_entry(
    tmp_path: Path,
) -> None:
    h = _Harness(tmp_path)
    try:
        await h.deployer.reconcile([_gateway()])
        ip = h.network.ipam.get("web-istio.shop")
        assert ip is not None and ip.startswith("127.83.0.")
        gw = h.deployer.process("web-istio.shop")
        assert gw is not None and h.gateways == [gw]
        # The agent binds its own address: listeners there, health and admin beside them.
        launch = gw.launch()
        assert launch.name == "web-istio" and launch.namespace == "shop"
        assert launch.ip == (ip,) and launch.health_bind == ip and launch.admin_address == ip
        assert launch.service_account == "web-istio"
        assert dict(launch.label)["gateway.networking.k8s.io/gateway-name"] == "web"
        assert h.identities == [("shop", "web-istio", "web-istio.shop")]
        entry = h.registrations.get(ResourceKey("WorkloadEntry", "shop", "web-istio"))
        assert entry is not None and entry.spec.address == ip  # type: ignore[attr-defined]
        assert entry.spec.labels["istio.io/gateway-name"] == "web"  # type: ignore[attr-defined]
        assert h.service_ports() == {"status-port": 15021, "l80": 80}
        recorded = h.state.gateways["web-istio.shop"]
        assert recorded["ip"] == ip
        assert list(recorded_deployments(h.state.gateways)) == ["web-istio.shop"]
        os.kill(h.pid(), 0)  # running
    finally:
        await h.deployer.reconcile([])


async def test_new_listeners_update_the_service_without_restarting_the_agent(
    tmp_path: Path,
) -> None:
    h = _Harness(tmp_path)
    try:
        await h.deployer.reconcile([_gateway()])
        pid = h.pid()
        await h.deployer.reconcile([_gateway((80, 8080))])
        assert h.pid() == pid
        assert h.service_ports() == {"status-port": 15021, "l80": 80, "l8080": 8080}
        # Another service account is another identity: a new agent, same address.
        ip = h.network.ipam.get("web-istio.shop")
        account = "  annotations:\n    gateway.istio.io/service-account: web-sa\n"
        await h.deployer.reconcile([_gateway((80, 8080), account)])
        assert h.pid() != pid and h.network.ipam.get("web-istio.shop") == ip
        gw = h.deployer.process("web-istio.shop")
        assert gw is not None and gw.launch().service_account == "web-sa"
        assert not os.path.exists(f"/proc/{pid}")
    finally:
        await h.deployer.reconcile([])


async def test_a_deleted_gateway_leaves_no_agent_address_registration_or_state(
    tmp_path: Path,
) -> None:
    h = _Harness(tmp_path)
    await h.deployer.reconcile([_gateway()])
    pid = h.pid()
    await h.deployer.reconcile([])
    assert not os.path.exists(f"/proc/{pid}")
    assert h.gateways == [] and h.deployer.deployed == {}
    assert h.registrations.list() == []
    assert h.network.ipam.allocations() == {}
    assert h.state.gateways == {} and h.state.processes == {}
    assert h.forgotten == ["web-istio.shop"]


async def test_a_waypoint_is_not_deployed_in_explicit_mode_and_says_so_once(
    tmp_path: Path,
) -> None:
    h = _Harness(tmp_path)
    text = (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        "metadata: {name: waypoint, namespace: shop}\n"
        "spec:\n  gatewayClassName: istio-waypoint\n"
        "  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n"
    )
    waypoint = load_text(text, "waypoint.yaml").resources[0]
    try:
        for _ in range(2):
            await h.deployer.reconcile([waypoint])
        assert h.deployer.deployed == {} and h.gateways == []
        said = [m for m in h.progress if "waypoint shop/waypoint not deployed" in m]
        assert len(said) == 1 and "transparent mode" in said[0]
    finally:
        await h.deployer.reconcile([])
