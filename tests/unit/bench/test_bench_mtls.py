"""The ADS simulator over mTLS against a real control plane: certificates from its CA.

The control plane loads the CA root that ``issue_client_tls`` created before it
started, so the simulator's certificate chains to the root the mTLS port trusts.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level package beside `src`, not installed
    sys.path.insert(0, str(ROOT))

from bench.ads_sim import SimConfig, Simulation  # noqa: E402
from bench.ads_tls import ClientTls, channel_factory, issue_client_tls  # noqa: E402
from bench.config_gen import generate_config  # noqa: E402

from pilotfish.controlplane.runner import ControlPlane  # noqa: E402
from pilotfish.controlplane.settings import ControlPlaneSettings  # noqa: E402


@pytest.fixture
async def cp_and_tls(tmp_path: Path) -> AsyncIterator[tuple[ControlPlane, ClientTls]]:
    config = tmp_path / "config"
    generate_config(config, 3)
    tls_dir = issue_client_tls(tmp_path / "ca", tmp_path / "sim-tls")
    cp = ControlPlane(
        ControlPlaneSettings(
            config_paths=(str(config),),
            xds_port=0,
            http_port=0,
            secure_port=0,
            xds_mtls_port=0,
            ca_dir=str(tmp_path / "ca"),
        )
    )
    await cp.start()
    try:
        yield cp, ClientTls.from_dir(tls_dir)
    finally:
        await cp.close()


async def _full_push(target: str, tls: ClientTls | None) -> dict[str, object]:
    sim = Simulation(
        SimConfig(
            target=target,
            proxies=4,
            services=3,
            streams_per_channel=2,
            open_channel=channel_factory(tls),
        )
    )
    await sim.start()
    try:
        return await sim.wait_full_push(timeout=30.0)
    finally:
        await sim.close()


async def test_simulator_gets_the_full_push_over_mtls(
    cp_and_tls: tuple[ControlPlane, ClientTls],
) -> None:
    cp, tls = cp_and_tls
    report = await _full_push(f"127.0.0.1:{cp.xds_mtls_port}", tls)
    assert report["converged"] and report["stream_errors"] == 0, report
    identities = {status.identity for status in cp.xds.status()}
    assert identities == {"spiffe://cluster.local/ns/default/sa/default"}
