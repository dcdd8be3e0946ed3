"""Settings of a local mesh (``pilotfish up``), built once in the CLI and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pilotfish.control_plane_ports import CA_PORT, XDS_MTLS_PORT
from pilotfish.store.etcd_target import DEFAULT_PREFIX, EtcdTls

__all__ = ["PROFILES", "Profile", "RuntimeSettings"]

Profile = Literal["default", "demo", "minimal"]
PROFILES: tuple[Profile, ...] = ("default", "demo", "minimal")


@dataclass(frozen=True)
class RuntimeSettings:
    """Everything ``pilotfish up`` decides before starting.

    Address ranges (documented in README): pods get addresses from
    ``pod_cidr`` on the bridge (the first address is the bridge itself);
    services get virtual IPs from ``service_cidr``. Both default to halves of
    198.18.0.0/15, the block set aside for network test setups, so they do not
    collide with real networks. Explicit mode gives pods loopback addresses
    from ``explicit_cidr``.
    """

    manifests: tuple[str, ...] = ()
    state_dir: Path = field(default_factory=lambda: Path(".pilotfish"))
    mode: Literal["transparent", "explicit"] = "transparent"
    profile: Profile = "default"
    ingress_port: int = 8080
    control_plane_port: int = 15014
    xds_port: int = 15010
    bridge: str = "pf0"
    pod_cidr: str = "198.18.0.0/16"
    service_cidr: str = "198.19.0.0/16"
    explicit_cidr: str = "127.77.0.0/16"
    ready_timeout: float = 180.0
    secure_port: int = CA_PORT  # the mesh CA (TLS; pods authenticate with their token)
    xds_mtls_port: int = XDS_MTLS_PORT  # xDS over mTLS (proxies present their certificate)
    trust_domain: str = "cluster.local"
    cert_ttl_seconds: int = 86400  # workload certificates; rotated at about half-life
    mtls: bool = True  # run the mesh CA and give every proxy a workload identity
    # ADS variant of every proxy: incremental (as Istio's default) or State of the World.
    xds_protocol: Literal["delta", "sotw"] = "delta"
    # Pods' default data plane: a sidecar each, or the host's node proxy (ambient).
    dataplane: Literal["sidecar", "ambient"] = "sidecar"
    # Mesh config file (``--mesh-config``), read by the control plane at start; its
    # trustDomain is already reflected in ``trust_domain``.
    mesh_config_file: str | None = None
    # Image map file (``--image-map``, ``runtime.image_map``): Kubernetes workloads
    # whose image it maps run as Workloads.
    image_map_file: str | None = None
    # ``--container-runtime``: run unmapped Kubernetes workloads' images with podman
    # (``runtime.podman``): ``auto`` when it can be used, ``podman`` requires it.
    container_runtime: Literal["auto", "podman", "none"] = "auto"
    # Telemetry addons (``runtime.addons``): None takes the profile's (demo: all).
    addons: tuple[str, ...] | None = None
    prometheus_port: int = 9090
    tracing_port: int = 9411
    dashboard_port: int = 20001
    scrape_interval_s: float = 5.0
    # The configuration store: None keeps files (``config_dir`` and the manifests);
    # an etcd address (``--config-store``) or the etcd addon (``--addons etcd`` on
    # ``etcd_port``) keeps it in etcd, where the manifests are applied at start.
    config_store: str | None = None
    etcd_tls: EtcdTls | None = None
    etcd_prefix: str = DEFAULT_PREFIX
    etcd_port: int = 2379
    # Control-plane replicas (``runtime.control_plane_replicas``): the supervisor's
    # own plus N-1 processes; every proxy is given every replica's addresses.
    control_plane_replicas: int = 1
    # More addresses this host's control planes listen on (xDS over mTLS, the CA,
    # the HTTP API; ``--listen-address``): the host's own, for other hosts' nodes.
    listen_addresses: tuple[str, ...] = ()
    # Node mode (``--control-plane``, ``runtime.node_mode``): no local control plane,
    # CA, gateways or addons; the pods of the manifests run against these remote
    # control planes (their HTTP API URLs), authenticated with ``remote_token_file``.
    remote_control_planes: tuple[str, ...] = ()
    remote_token_file: str | None = None
    # The node's name: its WorkloadEntries carry it (``<pod>-<node>``), so a node
    # that restarts removes the ones it left. Required in node mode.
    node_name: str = ""

    @property
    def fixed_ports(self) -> tuple[int, ...]:
        """The ports the user gave (or their defaults): the mesh binds them itself, so
        ``free_port`` must never hand one to a proxy's admin or a pod."""
        ports = (
            self.ingress_port,
            self.control_plane_port,
            self.xds_port,
            self.secure_port,
            self.xds_mtls_port,
            self.prometheus_port,
            self.tracing_port,
            self.dashboard_port,
            self.etcd_port,
        )
        return tuple(p for p in ports if p > 0)

    @property
    def node_mode(self) -> bool:
        """Whether this host runs pods against remote control planes."""
        return bool(self.remote_control_planes)

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def config_dir(self) -> Path:
        """Where ``pilotfish apply`` writes: watched along with the manifests."""
        return self.state_dir / "config"

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "pods"

    @property
    def netns_prefix(self) -> str:
        """Names of this mesh's pod namespaces: ``pf-`` on the default bridge, else
        ``<bridge>-``, so meshes on different bridges never touch each other's."""
        return "pf-" if self.bridge == "pf0" else f"{self.bridge}-"

    @property
    def ca_dir(self) -> Path:
        """The mesh CA's root (key 0600) lives here across runs."""
        return self.state_dir / "ca"

    @property
    def api_token_file(self) -> Path:
        """The control plane's HTTP API token (0600), reused across runs; the CLI finds it here."""
        return self.state_dir / "api-token"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def enabled_addons(self) -> tuple[str, ...]:
        """The addons to run: ``addons`` when given, else the demo profile's (all)."""
        if self.addons is not None:
            return self.addons
        return ("prometheus", "tracing", "dashboard") if self.profile == "demo" else ()

    @property
    def store_url(self) -> str | None:
        """The etcd the control plane uses (None: files): the addon's, else ``config_store``."""
        if "etcd" in self.enabled_addons:
            return f"etcd://127.0.0.1:{self.etcd_port}"
        return self.config_store

    @property
    def addons_dir(self) -> Path:
        return self.state_dir / "addons"

    @property
    def access_logs(self) -> bool:
        return self.profile == "demo"
