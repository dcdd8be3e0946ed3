"""The settings of the control plane a local mesh runs, and its mesh config overrides."""

from __future__ import annotations

from pathlib import Path

from pilotfish.model.mesh_config import MeshConfig
from pilotfish.runtime.control_plane_config import control_plane_settings, runtime_mesh_config
from pilotfish.runtime.settings import RuntimeSettings


def test_no_file_gives_istio_defaults_with_the_runtime_trust_domain(tmp_path: Path) -> None:
    s = RuntimeSettings(state_dir=tmp_path, trust_domain="example.org")
    mesh = runtime_mesh_config(s)
    # Istio's defaults, except that spans go to the runtime's trace store.
    assert mesh.model_copy(update={"default_config": None}) == MeshConfig(
        trust_domain="example.org"
    )
    assert mesh.proxy_defaults.tracing.zipkin.address == "127.0.0.1:9411"
    on = runtime_mesh_config(RuntimeSettings(state_dir=tmp_path, profile="demo"))
    assert on.access_log_file == "/dev/stdout"


def test_file_values_stand_but_the_trust_domain_is_the_runtimes(tmp_path: Path) -> None:
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text(
        "rootNamespace: mesh-root\ntrustDomain: file.org\naccessLogFile: /dev/stdout\n"
    )
    s = RuntimeSettings(
        state_dir=tmp_path, trust_domain="runtime.org", mesh_config_file=str(mesh_file)
    )
    mesh = runtime_mesh_config(s)
    assert (mesh.root_namespace, mesh.trust_domain) == ("mesh-root", "runtime.org")
    # access_logs off does not switch off the file's access log.
    assert mesh.access_log


def test_control_plane_serves_pods_only_over_mtls_on_the_bridge(tmp_path: Path) -> None:
    s = RuntimeSettings(state_dir=tmp_path)
    cp = control_plane_settings(s, "198.18.240.1")
    assert not cp.plaintext_xds and cp.extra_xds_binds == ("198.18.240.1",)
    assert cp.ca_dir == str(s.ca_dir) and cp.ca_token_store is not None
    assert cp.mesh == runtime_mesh_config(s, "198.18.240.1") and not cp.freeze_gc
    # A pod's loopback is its own: spans go to the trace store on the bridge.
    assert cp.mesh.proxy_defaults.tracing.zipkin.address == "198.18.240.1:9411"
    plain = control_plane_settings(
        RuntimeSettings(state_dir=tmp_path, mode="explicit", mtls=False), "127.0.0.1"
    )
    assert plain.plaintext_xds and plain.extra_xds_binds == () and plain.ca_dir is None


def test_demo_profile_traces_every_request_unless_the_file_says() -> None:
    demo = runtime_mesh_config(RuntimeSettings(profile="demo"))
    assert demo.proxy_defaults.tracing.sampling == 100.0
    assert runtime_mesh_config(RuntimeSettings()).proxy_defaults.tracing.sampling == 1.0


def test_a_collector_named_in_the_file_is_kept(tmp_path: Path) -> None:
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text(
        "defaultConfig:\n  tracing:\n    zipkin:\n      address: zipkin.tracing:9411\n"
    )
    s = RuntimeSettings(state_dir=tmp_path, profile="demo", mesh_config_file=str(mesh_file))
    tracing = runtime_mesh_config(s, "198.18.240.1").proxy_defaults.tracing
    assert (tracing.zipkin.address, tracing.sampling) == ("zipkin.tracing:9411", 100.0)
    other = RuntimeSettings(state_dir=tmp_path, tracing_port=19411)
    assert runtime_mesh_config(other).proxy_defaults.tracing.zipkin.address == "127.0.0.1:19411"


def test_the_etcd_addon_or_an_etcd_address_replaces_the_files(tmp_path: Path) -> None:
    files = control_plane_settings(RuntimeSettings(state_dir=tmp_path, manifests=("m.yaml",)), "")
    assert files.config_store is None
    assert files.config_paths == (str(tmp_path / "config"), "m.yaml")

    addon = RuntimeSettings(
        state_dir=tmp_path, manifests=("m.yaml",), addons=("etcd",), etcd_port=12379
    )
    cp = control_plane_settings(addon, "")
    # The manifests are applied to etcd at start, not watched as files.
    assert (cp.config_store, cp.config_paths) == ("etcd://127.0.0.1:12379", ())
    # The addon is the store, never a telemetry addon of the demo profile.
    assert "etcd" not in RuntimeSettings(state_dir=tmp_path, profile="demo").enabled_addons

    given = RuntimeSettings(state_dir=tmp_path, config_store="etcd://10.0.0.5:2379")
    assert control_plane_settings(given, "").config_store == "etcd://10.0.0.5:2379"
