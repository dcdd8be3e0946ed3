from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import SAMPLES, E2EMesh, down_leaves_nothing, free_port, require_root

from lanes import lane_bridge


def _mesh(tmp: Path, mode: str, bridge: str) -> Iterator[E2EMesh]:
    mesh = E2EMesh(tmp / "state", mode, free_port(), free_port(), free_port(), bridge)
    try:
        mesh.up(SAMPLES / "bookinfo.yaml", SAMPLES / "networking" / "bookinfo-gateway.yaml")
        yield mesh
    finally:
        down_leaves_nothing(mesh, bridge)


@pytest.fixture(scope="module")
def transparent_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    require_root()
    yield from _mesh(tmp_path_factory.mktemp("transparent"), "transparent", lane_bridge("pfe2e"))


@pytest.fixture(scope="module")
def explicit_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    yield from _mesh(tmp_path_factory.mktemp("explicit"), "explicit", lane_bridge("pfe2x"))


@pytest.fixture(scope="module")
def demo_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    """Bookinfo, transparent with mTLS, under the demo profile (telemetry addons on).

    One mesh for the whole observability module: its tests share it.
    """
    require_root()
    tmp = tmp_path_factory.mktemp("demo")
    bridge = lane_bridge("pfe2o")
    # JSON access logs (read back as JSON lines by the access-log test).
    mesh_config = tmp / "mesh.yaml"
    # A short drain: tests that change Telemetry wait for old filter chains to go.
    mesh_config.write_text(
        "accessLogFile: /dev/stdout\naccessLogEncoding: JSON\ndefaultConfig:\n  drainDuration: 1s\n"
    )
    mesh = E2EMesh(tmp / "state", "transparent", free_port(), free_port(), free_port(), bridge)
    # The addons on free ports: the machine's 9090/9411/20001 may be taken.
    mesh.prometheus_port, mesh.tracing_port, mesh.dashboard_port = (
        free_port(),
        free_port(),
        free_port(),
    )
    mesh.extra_up_args = (
        "--mesh-config",
        str(mesh_config),
        "--prometheus-port",
        str(mesh.prometheus_port),
        "--tracing-port",
        str(mesh.tracing_port),
        "--dashboard-port",
        str(mesh.dashboard_port),
    )
    try:
        mesh.up(
            SAMPLES / "bookinfo.yaml",
            SAMPLES / "networking" / "bookinfo-gateway.yaml",
            profile="demo",
        )
        yield mesh
    finally:
        down_leaves_nothing(mesh, bridge)
