"""``pilotfish up --addons etcd``: the mesh's configuration lives in a local etcd.

Bookinfo in explicit mode (no root needed). The manifests given to ``up`` are
applied to etcd; ``pilotfish apply`` writes there too and the proxies follow;
``down`` stops etcd and leaves nothing running; its data stays in the state
directory, as ``config/`` does for the file store.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import (
    NETWORKING,
    SAMPLES,
    E2EMesh,
    down_leaves_nothing,
    free_port,
    processes_mentioning,
)

from etcdkit import etcd_missing
from lanes import lane_bridge

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def etcd_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2EMesh, int]]:
    missing = etcd_missing()
    if missing:
        pytest.skip(missing)
    tmp = tmp_path_factory.mktemp("etcd-mesh")
    etcd_port = free_port()
    bridge = lane_bridge("pfe2d")
    mesh = E2EMesh(
        tmp / "state",
        "explicit",
        free_port(),
        free_port(),
        free_port(),
        bridge,
        extra_up_args=("--addons", "etcd", "--etcd-port", str(etcd_port)),
    )
    try:
        mesh.up(SAMPLES / "bookinfo.yaml", SAMPLES / "networking" / "bookinfo-gateway.yaml")
        yield mesh, etcd_port
    finally:
        down_leaves_nothing(mesh, bridge)
        assert processes_mentioning(str(mesh.state_dir / "etcd")) == []
        # The data stays, as config/ does for the file store: the next ``up`` serves it.
        assert (mesh.state_dir / "etcd" / "member").is_dir()


def etcd_keys(port: int) -> list[str]:
    out = subprocess.run(
        [
            "etcdctl",
            f"--endpoints=127.0.0.1:{port}",
            "get",
            "--prefix",
            "/registry/",
            "--keys-only",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
    ).stdout
    return [line for line in out.splitlines() if line]


def test_up_with_the_etcd_addon_serves_what_apply_writes(etcd_mesh: tuple[E2EMesh, int]) -> None:
    mesh, port = etcd_mesh
    # The manifests given to ``up`` are in etcd, in Kubernetes' layout.
    keys = etcd_keys(port)
    assert "/registry/services/default/reviews" in keys
    assert "/registry/networking.istio.io/gateways/default/bookinfo-gateway" in keys
    assert not any((mesh.state_dir / "config").glob("**/*.yaml"))  # nothing went to files

    mesh.cli(
        "apply",
        "-f",
        str(NETWORKING / "destination-rule-all.yaml"),
        "-f",
        str(NETWORKING / "virtual-service-reviews-v3.yaml"),
    )
    assert "/registry/networking.istio.io/virtualservices/default/reviews" in etcd_keys(port)
    mesh.converge({"v3"})
    assert mesh.versions(20) == {"v3": 20}
    out = json.loads(mesh.cli("get", "virtualservice", "reviews", "-o", "json").stdout)
    assert out["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v3"


def test_data_lives_in_the_state_dir(etcd_mesh: tuple[E2EMesh, int]) -> None:
    mesh, _ = etcd_mesh
    data = mesh.state_dir / "etcd"
    assert (data / "member").is_dir()
    assert Path(data).stat().st_mode & 0o077 == 0
