"""Node mode's pieces (``runtime.node_mode``, ``remote_control_plane``,
``node_registrations``) against a real control plane with a CA on loopback:
node configuration, join tokens per pod, WorkloadEntries named and cleaned up
per node, failover between URLs, and the settings a node refuses."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilotfish.api.resource import ResourceKey
from pilotfish.controlplane.api_token import read_token_file
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.runtime.node_mode import node_mode_problem
from pilotfish.runtime.node_registrations import (
    NODE_ANNOTATION,
    NodeRegistrations,
    remote_document,
)
from pilotfish.runtime.registration import workload_entry
from pilotfish.runtime.remote_control_plane import RemoteControlPlane, RemoteError, parse_urls
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.store import MemoryStore

NODE = RuntimeSettings(
    manifests=("/x/pods.yaml",),
    remote_control_planes=("http://198.18.243.2:15014",),
    remote_token_file="/x/api-token",
    node_name="hostb",
)


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"control_plane_replicas": 2}, "--control-plane-replicas"),
        ({"addons": ("etcd",)}, "--addons"),
        ({"profile": "demo"}, "--addons"),  # the demo profile's addons
        ({"config_store": "etcd://127.0.0.1:2379"}, "--config-store"),
        ({"listen_addresses": ("198.18.243.3",)}, "--listen-address"),
        ({"mtls": False}, "--no-mtls"),
        ({"dataplane": "ambient"}, "--dataplane ambient"),
    ],
)
def test_a_node_refuses_what_belongs_to_the_control_plane_host(
    change: dict[str, object], flag: str
) -> None:
    problem = node_mode_problem(dataclasses.replace(NODE, **change))  # type: ignore[arg-type]
    assert problem is not None and flag in problem and "runs only pods" in problem


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"remote_token_file": None}, "--api-token-file"),
        ({"node_name": "Host_B"}, "--node-name"),
        ({"node_name": ""}, "--node-name"),
        ({"mode": "explicit"}, "transparent mode"),
        ({"manifests": ()}, "manifests"),
    ],
)
def test_a_node_needs_its_token_name_mode_and_pods(change: dict[str, object], says: str) -> None:
    problem = node_mode_problem(dataclasses.replace(NODE, **change))  # type: ignore[arg-type]
    assert problem is not None and says in problem


def test_valid_node_settings_and_plain_meshes_pass() -> None:
    assert node_mode_problem(NODE) is None
    assert node_mode_problem(RuntimeSettings(control_plane_replicas=3)) is None


def test_control_plane_urls_are_parsed_strictly() -> None:
    assert parse_urls("http://a:1, http://b:2/") == ("http://a:1", "http://b:2")
    for bad in ("a:15014", "http://a:1/path", "", "ftp://a:1"):
        with pytest.raises(ValueError):
            parse_urls(bad)


def test_published_entries_are_named_and_annotated_per_node() -> None:
    entry = workload_entry("reviews-v1-0", "default", "198.18.244.5", {"app": "reviews"}, "sa")
    doc = remote_document(entry, "hostb")
    assert doc["metadata"]["name"] == "reviews-v1-0-hostb"
    assert doc["metadata"]["annotations"][NODE_ANNOTATION] == "hostb"
    assert doc["spec"]["address"] == "198.18.244.5"
    assert doc["spec"]["labels"] == {"app": "reviews"}


# -- against a real control plane ----------------------------------------------------


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: refuses


@pytest.fixture
async def control_plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\n"
        "spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}\n"
    )
    settings = ControlPlaneSettings(
        config_paths=(str(config),),
        xds_port=0,
        http_port=0,
        secure_port=0,
        xds_mtls_port=0,
        ca_dir=str(tmp_path / "ca"),
        api_token_file=str(tmp_path / "api-token"),
        service_cidr="198.19.243.0/24",
    )
    cp = ControlPlane(settings)
    await cp.start()
    try:
        yield cp
    finally:
        await cp.close()


def _remote(cp: ControlPlane, *urls: str) -> RemoteControlPlane:
    token = read_token_file(Path(str(cp.settings.api_token_file)))
    return RemoteControlPlane(urls or (f"http://127.0.0.1:{cp.http_port}",), token, timeout=2)


async def test_discovery_fails_over_and_names_the_ports_pods_dial(
    control_plane: ControlPlane,
) -> None:
    cp = control_plane
    good = f"http://127.0.0.1:{cp.http_port}"
    remote = _remote(cp, _dead_url(), good)
    try:
        config = await remote.discover(0.5)
        assert [r.url for r in config.replicas] == [good]  # the dead one is left out
        assert config.xds_addresses == f"127.0.0.1:{cp.xds_mtls_port}"
        assert config.ca_addresses == f"127.0.0.1:{cp.secure_port}"
        assert config.service_cidr == "198.19.243.0/24"
        assert config.trust_domain == "cluster.local"
        # Calls go on to the URL that answers.
        _, items = await remote.list_items("/api/v1/services")
        assert [i["metadata"]["name"] for i in items] == ["reviews"]
    finally:
        await remote.close()


async def test_a_wrong_token_or_no_answer_is_a_clear_error(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token-at-all-0123456789abcdef\n")
    bad.chmod(0o600)
    url = f"http://127.0.0.1:{control_plane.http_port}"
    remote = RemoteControlPlane((url,), read_token_file(bad), timeout=2)
    try:
        with pytest.raises(RemoteError, match="refused the API token"):
            await remote.discover(0.5)
    finally:
        await remote.close()
    dead = _remote(control_plane, _dead_url())
    try:
        with pytest.raises(RemoteError, match="no control plane answered"):
            await dead.discover(0.3)
    finally:
        await dead.close()


async def test_join_tokens_are_scoped_to_the_pod(control_plane: ControlPlane) -> None:
    remote = _remote(control_plane)
    try:
        grant = await remote.join_token("default", "bookinfo-reviews", 300)
    finally:
        await remote.close()
    assert grant["namespace"] == "default" and grant["serviceAccount"] == "bookinfo-reviews"
    assert grant["rootCert"].startswith("-----BEGIN CERTIFICATE-----")
    assert len(grant["token"]) >= 20


async def test_registrations_follow_the_node_and_clean_up_after_it(
    control_plane: ControlPlane,
) -> None:
    cp = control_plane
    local = MemoryStore()
    remote = _remote(cp)
    try:
        # An entry an earlier run of this node left, one of another node.
        stale = remote_document(workload_entry("old-0", "default", "198.18.244.9", {}, "sa"), "b")
        other = remote_document(workload_entry("old-0", "default", "198.18.245.9", {}, "sa"), "c")
        for doc in (stale, other):
            name = doc["metadata"]["name"]
            path = f"/apis/networking.istio.io/v1/namespaces/default/workloadentries/{name}"
            status, _ = await remote.call("PUT", path, doc)
            assert status == 201
        node = NodeRegistrations(local, remote, "b")
        assert await node.remove_stale() == 1
        key = ResourceKey("WorkloadEntry", "default", "old-0-b")
        assert cp.store.get(key) is None
        assert cp.store.get(ResourceKey("WorkloadEntry", "default", "old-0-c")) is not None

        local.apply(workload_entry("reviews-v1-0", "default", "198.18.244.5", {"app": "r"}, "sa"))
        assert await node.sync()
        got = cp.store.get(ResourceKey("WorkloadEntry", "default", "reviews-v1-0-b"))
        assert got is not None and got.metadata.annotations[NODE_ANNOTATION] == "b"
        local.delete(ResourceKey("WorkloadEntry", "default", "reviews-v1-0"))
        assert await node.sync()
        assert cp.store.get(ResourceKey("WorkloadEntry", "default", "reviews-v1-0-b")) is None

        local.apply(workload_entry("ratings-v1-0", "default", "198.18.244.6", {}, "sa"))
        assert await node.sync()
        await node.withdraw()
        assert cp.store.get(ResourceKey("WorkloadEntry", "default", "ratings-v1-0-b")) is None
    finally:
        await remote.close()


async def test_a_failed_registration_stays_pending_until_it_succeeds(
    control_plane: ControlPlane,
) -> None:
    cp = control_plane
    local = MemoryStore([workload_entry("p-0", "default", "198.18.244.7", {}, "sa")])
    down = _remote(cp, _dead_url())
    try:
        node = NodeRegistrations(local, down, "b")
        assert not await node.sync()  # nobody answered: nothing counted as published
        assert node.published == {}
    finally:
        await down.close()
    up = _remote(cp)
    try:
        node = NodeRegistrations(local, up, "b")
        assert await node.sync()
        assert cp.store.get(ResourceKey("WorkloadEntry", "default", "p-0-b")) is not None
    finally:
        await up.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--addons", "etcd"], "--addons belong to the host that runs the control plane"),
        (["--control-plane-replicas", "2"], "--control-plane-replicas belong"),
        (["--listen-address", "not-an-ip"], "is not an IP address"),
    ],
)
def test_up_refuses_a_node_with_control_plane_flags(
    tmp_path: Path, args: list[str], says: str
) -> None:
    from click.testing import CliRunner

    from pilotfish.cli.up import up

    pods = tmp_path / "pods.yaml"
    pods.write_text("")
    argv = [str(pods), "--mode", "transparent", "--state-dir", str(tmp_path / "s")]
    argv += ["--control-plane", "http://127.0.0.1:1", "--api-token-file", str(pods), *args]
    result = CliRunner().invoke(up, argv)
    assert result.exit_code == 2 and says in " ".join(result.output.split()), result.output
    assert not (tmp_path / "s").exists()  # refused before anything started


def test_node_flags_without_a_control_plane_are_refused(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pilotfish.cli.up import up

    pods = tmp_path / "pods.yaml"
    pods.write_text("")
    result = CliRunner().invoke(up, [str(pods), "--mode", "explicit", "--node-name", "b"])
    assert result.exit_code == 2 and "--node-name is for node mode" in result.output
