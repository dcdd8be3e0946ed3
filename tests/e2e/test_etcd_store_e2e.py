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
    poll,
    processes_mentioning,
)

from etcdkit import all_threads_stopped, etcd_missing
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


def test_an_etcd_outage_keeps_traffic_refuses_apply_and_loses_nothing(
    etcd_mesh: tuple[E2EMesh, int], tmp_path: Path
) -> None:
    """etcd stops answering (SIGSTOP: its supervisor would restart a killed one): the
    proxies keep their last configuration and `apply` fails in bounded time, saying
    that the outcome is unknown (etcd holds the request and may carry it out when it
    resumes, as the Kubernetes API server warns of its timeouts). When etcd answers
    again, the batch is there whole or not at all, the proxies converge on what etcd
    holds, and every object written before the outage is still served."""
    import os
    import signal
    import time

    mesh, port = etcd_mesh
    mesh.cli(
        "apply",
        "-f",
        str(NETWORKING / "destination-rule-all.yaml"),
        "-f",
        str(NETWORKING / "virtual-service-reviews-v3.yaml"),
    )
    mesh.converge({"v3"})
    before = set(etcd_keys(port))
    (etcd,) = processes_mentioning(f"--data-dir={mesh.state_dir / 'etcd'}")
    pid = int(etcd.split(":", 1)[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        # kill() returns before every etcd thread has stopped: wait, or an apply may land.
        poll(lambda: all_threads_stopped(pid), "etcd to be stopped", 10)
        assert mesh.versions(20) == {"v3": 20}
        started = time.monotonic()
        refused = mesh.cli(
            "apply", "-f", str(NETWORKING / "virtual-service-all-v1.yaml"), check=False, timeout=90
        )
        took = time.monotonic() - started
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0, said
        assert "did not answer in time" in said and "may still be applied" in said, said
        assert took < 30, f"apply took {took:.1f} s to fail"
        assert mesh.versions(20) == {"v3": 20}
    finally:
        os.kill(pid, signal.SIGCONT)
    added = {
        f"/registry/networking.istio.io/virtualservices/default/{name}"
        for name in ("productpage", "details", "ratings")
    }
    # One transaction: all of the batch or none of it, whichever etcd did.
    after = poll(
        lambda: set(etcd_keys(port)), "etcd to answer again", deadline=30, ignore=(Exception,)
    )
    assert after in (before, before | added), after ^ before
    held = "v1" if after != before else "v3"

    def served_subset() -> str:
        reviews = json.loads(mesh.cli("get", "virtualservice", "reviews", "-o", "json").stdout)
        return str(reviews["spec"]["http"][0]["route"][0]["destination"]["subset"])

    # `get` asks the control plane, whose mirror hears of the batch through its
    # watch, a moment after etcdctl can read it.
    poll(lambda: served_subset() == held, f"the control plane to serve subset {held}", 30)
    mesh.converge({held})
    mesh.cli("apply", "-f", str(NETWORKING / "virtual-service-all-v1.yaml"))
    mesh.converge({"v1"})
    assert mesh.versions(20) == {"v1": 20}
    out = json.loads(mesh.cli("get", "destinationrule", "reviews", "-o", "json").stdout)
    assert {s["name"] for s in out["spec"]["subsets"]} == {"v1", "v2", "v3"}
