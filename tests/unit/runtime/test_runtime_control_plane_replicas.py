"""The extra control-plane replicas of a local mesh: ports, settings, registrations."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest
import yaml
from bench.replicas_sync import reviews_vs
from click.testing import CliRunner

from etcdkit import EtcdServer, etcd_server
from pilotfish.api.loader import load_text
from pilotfish.api.resource import ResourceKey
from pilotfish.cli.up import _supervisor_argv, up
from pilotfish.runtime import ports
from pilotfish.runtime.control_plane_config import control_plane_settings
from pilotfish.runtime.control_plane_replicas import (
    ControlPlaneReplicas,
    _write_registrations,
    registrations_dir,
    replica_ports,
    replica_settings,
    replica_store,
    settings_from_json,
    settings_to_json,
)
from pilotfish.runtime.mesh_store import primary_store
from pilotfish.runtime.ports import free_port
from pilotfish.runtime.registration import workload_entry
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.store import FileStore, MemoryStore
from polling import apoll

__all__ = ["etcd_server"]  # the real etcd of tests/etcdkit.py, for the store test


def _settings(tmp_path: Path, **kw: object) -> RuntimeSettings:
    fields: dict[str, object] = {"control_plane_replicas": 3, **kw}
    return RuntimeSettings(
        manifests=("/srv/bookinfo.yaml",),
        state_dir=tmp_path / "state",
        addons=("prometheus",),
        **fields,  # type: ignore[arg-type]
    )


def test_replica_ports_step_by_one_hundred_from_the_configured_ones(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    first, third = replica_ports(s, 0), replica_ports(s, 2)
    assert (first.xds, first.http, first.secure, first.xds_mtls) == (15010, 15014, 15012, 15011)
    assert (third.xds, third.http, third.secure, third.xds_mtls) == (15210, 15214, 15212, 15211)


def test_a_replica_translates_with_replica_ones_settings_but_its_own_ports(
    tmp_path: Path,
) -> None:
    s = _settings(tmp_path)
    one = control_plane_settings(s, "198.18.0.1")
    two = replica_settings(s, "198.18.0.1", 1)
    differing = {
        f.name for f in dataclasses.fields(one) if getattr(one, f.name) != getattr(two, f.name)
    }
    assert differing == {"xds_port", "http_port", "secure_port", "xds_mtls_port"}
    # The shared CA: one directory, one token store, one API token file.
    assert two.ca_dir == one.ca_dir and two.ca_token_store == one.ca_token_store
    assert two.api_token_file == one.api_token_file


def test_runtime_settings_survive_the_trip_to_a_replica_process(tmp_path: Path) -> None:
    s = _settings(tmp_path, mesh_config_file="/srv/mesh.yaml", mode="explicit")
    assert settings_from_json(settings_to_json(s)) == s


def test_agents_get_every_replicas_address(tmp_path: Path) -> None:
    replicas = ControlPlaneReplicas(_settings(tmp_path), "198.18.0.1")
    assert list(replicas.extra) == [1, 2]
    assert replicas.addresses(lambda p: p.xds_mtls) == ["198.18.0.1:15111", "198.18.0.1:15211"]
    one = ControlPlaneReplicas(_settings(tmp_path, control_plane_replicas=1), "198.18.0.1")
    assert one.addresses(lambda p: p.secure) == []


async def test_registrations_are_mirrored_to_a_file_replicas_load(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    registrations_dir(s).mkdir(parents=True)
    store = MemoryStore()
    entry = workload_entry(
        "reviews-v1-0", "default", "198.18.0.7", {"app": "reviews"}, "reviews", {"http": 9080}
    )
    store.apply(entry)
    _write_registrations(store, s)
    [doc] = yaml.safe_load_all((registrations_dir(s) / "registrations.yaml").read_text())
    assert doc["kind"] == "WorkloadEntry" and doc["spec"]["address"] == "198.18.0.7"
    files = FileStore((str(registrations_dir(s)),))
    await files.start()
    try:
        [loaded] = files.list(kind="WorkloadEntry")
        assert files.diagnostics() == []
    finally:
        await files.close()
    assert loaded.key == entry.key
    assert loaded.spec == entry.spec
    assert loaded.metadata.labels == entry.metadata.labels


def test_up_takes_one_to_three_replicas_and_the_supervisor_keeps_them(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    argv = _supervisor_argv(s)
    assert argv[argv.index("--control-plane-replicas") + 1] == "3"
    assert "--control-plane-replicas" not in _supervisor_argv(
        dataclasses.replace(s, control_plane_replicas=1)
    )
    result = CliRunner().invoke(up, [str(tmp_path), "--control-plane-replicas", "4"])
    assert result.exit_code == 2 and "1<=x<=3" in result.output


@pytest.mark.parametrize("count", [0, 4])
def test_replica_counts_outside_one_to_three_are_refused(tmp_path: Path, count: int) -> None:
    result = CliRunner().invoke(up, [str(tmp_path), "--control-plane-replicas", str(count)])
    assert result.exit_code == 2


async def test_a_replica_serves_the_shared_etcd_when_the_mesh_uses_one(
    tmp_path: Path, etcd_server: EtcdServer
) -> None:
    """With etcd (``--config-store``, or the addon), a replica watches the same store as
    replica 1, not the (empty) config paths: a write through replica 1 reaches it."""
    s = _settings(tmp_path, config_store=etcd_server.url)
    registrations_dir(s).mkdir(parents=True)
    _write_registrations(MemoryStore(), s)
    first = primary_store(control_plane_settings(s, "198.18.0.1"))
    second = replica_store(replica_settings(s, "198.18.0.1", 1), registrations_dir(s))
    key = ResourceKey("VirtualService", "default", "reviews")
    try:
        await first.start()
        await second.start()
        [vs] = load_text(reviews_vs(90), "reviews.json").resources
        written = first.apply(vs)
        await apoll(lambda: second.get(key) is not None, "the replica to see the write")
        held = second.get(key)
        assert held is not None and held.spec == vs.spec
        assert second.revision >= written  # etcd's revision, the same on every replica
    finally:
        await second.close()
        await first.close()


def test_free_port_never_hands_out_a_replicas_port(tmp_path: Path) -> None:
    s = _settings(tmp_path, xds_port=free_port())
    replicas = ControlPlaneReplicas(s, "127.0.0.1")
    taken = {port for i in replicas.extra for port in dataclasses.astuple(replica_ports(s, i))}
    assert len(taken) == 8 and taken <= ports._handed_out  # what free_port skips


async def test_a_busy_replica_port_is_named_at_once(tmp_path: Path) -> None:
    s = _settings(tmp_path, control_plane_replicas=2, xds_port=free_port())
    busy = replica_ports(s, 1).xds
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        replicas = ControlPlaneReplicas(s, "127.0.0.1")
        try:
            with pytest.raises(RuntimeError, match=f"control-plane-2's ports .* in use: {busy}"):
                await replicas.start(MemoryStore(), "127.0.0.1")
        finally:
            await replicas.stop()
    assert replicas.processes == []
