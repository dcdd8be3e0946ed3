"""The control plane a local mesh runs: its settings, derived from the runtime's.

Pure functions of ``RuntimeSettings`` (and the bridge address), so what the
runtime asks of its control plane is unit-tested without starting one.
"""

from __future__ import annotations

from pilotfish.ca.tokens import TOKEN_STORE_FILE
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.model.mesh_config import (
    DEFAULT_MESH_CONFIG,
    MeshConfig,
    load_mesh_config,
    with_overrides,
)
from pilotfish.model.mesh_telemetry import ZipkinAddress
from pilotfish.runtime.settings import RuntimeSettings

__all__ = ["control_plane_settings", "runtime_mesh_config"]


def runtime_mesh_config(s: RuntimeSettings, collector_host: str = "127.0.0.1") -> MeshConfig:
    """The mesh config file's (or Istio's defaults) with the runtime's overrides.

    Proxies send spans to the runtime's trace store at ``collector_host`` (the
    bridge in transparent mode: a pod's loopback is its own) unless the file
    names a collector itself. Raises ``MeshConfigError`` for a bad file
    (``pilotfish up`` checked it first).
    """
    base = load_mesh_config(s.mesh_config_file) if s.mesh_config_file else DEFAULT_MESH_CONFIG
    # The runtime's trust domain (the CA's) stays authoritative; the demo
    # profile's access logs stay on whatever the file says.
    mesh = with_overrides(
        base, trust_domain=s.trust_domain, access_log=True if s.access_logs else None
    )
    tracing = mesh.proxy_defaults.tracing
    if s.profile == "demo" and not _sets(mesh, "sampling"):
        # Istio's demo profile traces every request (the default samples 1 %).
        tracing = tracing.model_copy(update={"sampling": 100.0})
    if not _sets(mesh, "zipkin"):
        address = f"{collector_host}:{s.tracing_port}"
        tracing = tracing.model_copy(update={"zipkin": ZipkinAddress(address=address)})
    defaults = mesh.proxy_defaults.model_copy(update={"tracing": tracing})
    return mesh.model_copy(update={"default_config": defaults})


def _sets(mesh: MeshConfig, field: str) -> bool:
    """Whether the mesh config file set ``defaultConfig.tracing.<field>`` itself."""
    config = mesh.default_config
    return config is not None and field in config.tracing.model_fields_set


def control_plane_settings(s: RuntimeSettings, bridge_ip: str) -> ControlPlaneSettings:
    """The in-process control plane's settings for the mesh ``s`` describes."""
    transparent = s.mode == "transparent"
    return ControlPlaneSettings(
        # With etcd the manifests are applied to the store instead (``mesh``).
        config_paths=() if s.store_url else (str(s.config_dir), *s.manifests),
        config_store=s.store_url,
        etcd_tls=s.etcd_tls if s.store_url == s.config_store else None,
        etcd_prefix=s.etcd_prefix,
        bind="127.0.0.1",
        xds_port=s.xds_port,
        http_port=s.control_plane_port,
        service_cidr=s.service_cidr,
        # Pods reach the control plane on the bridge; with the CA only through the
        # mTLS port: unauthenticated xDS is never served to a pod.
        plaintext_xds=not s.mtls,
        extra_xds_binds=((bridge_ip,) if transparent else ()) + s.listen_addresses,
        # Other hosts' nodes call the API on the host's own address (``--listen-address``).
        extra_http_binds=s.listen_addresses,
        mesh=runtime_mesh_config(s, bridge_ip if transparent else "127.0.0.1"),
        ca_dir=str(s.ca_dir) if s.mtls else None,
        secure_port=s.secure_port,
        xds_mtls_port=s.xds_mtls_port,
        cert_ttl_seconds=s.cert_ttl_seconds,
        # Adopted pods keep their tokens across a supervisor restart.
        ca_token_store=str(s.ca_dir / TOKEN_STORE_FILE) if s.mtls else None,
        api_token_file=str(s.api_token_file),
    )
