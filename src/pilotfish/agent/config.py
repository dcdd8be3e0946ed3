"""Settings of one proxy agent, and parsing of the small string forms users type."""

from __future__ import annotations

import hashlib
import ipaddress
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pilotfish.control_plane_ports import XDS_MTLS_PORT
from pilotfish.model.proxy_view import Interception, Role
from pilotfish.peer_labels import DEFAULT_CLUSTER_ID

__all__ = [
    "AgentConfig",
    "AppProbe",
    "ConfigError",
    "default_work_dir",
    "is_ip_address",
    "parse_address",
    "parse_addresses",
    "parse_app_metrics",
    "parse_app_probe",
    "parse_duration",
    "parse_label",
    "parse_port_mapping",
]


class ConfigError(ValueError):
    """A setting is malformed; the message is meant for the user."""


@dataclass(frozen=True, slots=True)
class AppProbe:
    """A readiness check of the local app that the agent runs on request.

    ``port`` is the app's declared (container) port; the agent maps it through
    ``app_ports`` to the port the app really listens on. ``kind`` ``http``
    sends ``GET path`` (2xx/3xx is healthy); ``tcp`` only opens a connection.
    """

    kind: Literal["http", "tcp"]
    port: int
    path: str = "/"

    def flag(self) -> str:
        """The ``--app-probe`` form: ``http:<port>:<path>`` or ``tcp:<port>``."""
        return f"http:{self.port}:{self.path}" if self.kind == "http" else f"tcp:{self.port}"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything an agent needs to run one Envoy.

    ``ips`` are the workload's instance addresses (the first is the primary).
    ``app_ports`` maps a service target port to the port the local app really
    listens on. Port 0 for ``stats_port`` disables the Prometheus listener.
    ``work_dir`` of ``None`` means ``default_work_dir(name, namespace)``.
    """

    name: str
    namespace: str
    role: Role = "sidecar"
    labels: tuple[tuple[str, str], ...] = ()
    service_account: str = "default"
    # The workload (deployment) the proxy belongs to, and the cluster it runs
    # in: labels of Istio's metrics. "" workload: the proxy's name.
    workload: str = ""
    cluster_id: str = DEFAULT_CLUSTER_ID
    # "region/zone/subzone" of the workload ("" unknown): locality load balancing.
    locality: str = ""
    ips: tuple[str, ...] = ("127.0.0.1",)
    xds_host: str = "127.0.0.1"
    xds_port: int = 15010
    admin_port: int = 15000
    # Loopback only: the admin API can stop Envoy. A pod that is itself a
    # loopback address (explicit mode) uses its own so pods do not clash.
    admin_address: str = "127.0.0.1"
    health_port: int = 15021
    health_bind: str = "127.0.0.1"
    interception: Interception = "NONE"
    app_address: str = "127.0.0.1"
    app_ports: tuple[tuple[int, int], ...] = ()
    outbound_port: int = 15001
    inbound_port: int = 15006
    stats_port: int = 15090
    # The agent's merged metrics (Envoy's, its own, the app's) on
    # ``health_bind:status_port/stats/prometheus``; 0: not served.
    status_port: int = 0
    # The app's metrics to merge in: (port, path) from prometheus.io annotations.
    app_metrics: tuple[int, str] | None = None
    concurrency: int = 2
    drain_duration: float = 5.0
    log_level: str = "info"
    work_dir: Path | None = None
    envoy_path: str | None = None
    inherit_envoy_output: bool = False
    extra_envoy_args: tuple[str, ...] = field(default=())
    # Run Envoy as this uid/gid (transparent capture exempts the proxy's own
    # traffic by owner, as Istio's 1337). None keeps the agent's identity.
    envoy_uid: int | None = None
    envoy_gid: int | None = None
    # Checks served on ``/app-health/<port>/ready`` (Istio's rewritten app probes).
    app_probes: tuple[AppProbe, ...] = ()
    # Workload certificates. With ``ca_address`` set the agent gets a SPIFFE
    # certificate from the mesh CA (authenticated by the token in
    # ``ca_token_file``, the CA verified with ``root_cert_file``) before it
    # starts Envoy, serves it over SDS and renews it. Without, no SDS at all.
    ca_address: str | None = None  # HOST:PORT of the CA (the control plane's CA port, TLS)
    ca_token_file: Path | None = None
    root_cert_file: Path | None = None
    trust_domain: str = "cluster.local"
    cert_ttl: int | None = None  # requested lifetime in seconds; None: the CA's default
    # xDS over mTLS to ``xds_secure_host:xds_secure_port`` (requires a CA): Envoy
    # presents the workload certificate it gets from this agent over SDS.
    xds_tls: bool = False
    xds_secure_host: str | None = None  # None: ``xds_host``
    xds_secure_port: int = XDS_MTLS_PORT
    # ADS variant: incremental ("delta", Envoy's DELTA_GRPC) or State of the World.
    xds_protocol: Literal["delta", "sotw"] = "delta"
    # Further control-plane replicas, after the first: Envoy's xDS cluster lists
    # every one (plain or mTLS port) and the CA client fails over between them.
    xds_alternates: tuple[tuple[str, int], ...] = ()
    xds_secure_alternates: tuple[tuple[str, int], ...] = ()
    ca_alternates: tuple[str, ...] = ()
    # Node proxies (role ``node-proxy``): the host they serve, and the directory
    # where the runtime hands over the CA tokens of its ambient pods
    # (``agent.pod_identities``).
    node_name: str = ""
    pod_tokens_dir: Path | None = None
    # The WorkloadGroup this workload joined the mesh for (``pilotfish join``):
    # sent as node metadata so the control plane registers it ("" for none).
    workload_group: str = ""

    def __post_init__(self) -> None:
        if not self.admin_address.startswith("127.") and self.admin_address != "::1":
            raise ConfigError(f"admin address must be a loopback address, got {self.admin_address}")
        if not self.name or not self.namespace:
            raise ConfigError("name and namespace are required")
        if not self.ips:
            raise ConfigError("at least one instance IP is required")
        for port_name in ("xds_port", "admin_port", "health_port", "outbound_port", "inbound_port"):
            port = getattr(self, port_name)
            if not 0 < port < 65536:
                raise ConfigError(f"{port_name} must be in 1..65535, got {port}")
        if not 0 <= self.stats_port < 65536:
            raise ConfigError(f"stats_port must be in 0..65535, got {self.stats_port}")
        if self.concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        if self.drain_duration < 0:
            raise ConfigError("drain duration must not be negative")
        for _, port in (*self.xds_alternates, *self.xds_secure_alternates):
            if not 0 < port < 65536:
                raise ConfigError(f"xDS address port must be in 1..65535, got {port}")
        if self.ca_alternates and self.ca_address is None:
            raise ConfigError("further CA addresses need a first one")
        for address in self.ca_addresses:
            parse_address(address)
        if self.ca_address is not None and (
            self.ca_token_file is None or self.root_cert_file is None
        ):
            raise ConfigError("a CA address needs a CA token file and a root cert file")
        if self.xds_tls and self.ca_address is None:
            raise ConfigError("xDS over TLS needs a CA (the proxy's client certificate)")
        if not 0 < self.xds_secure_port < 65536:
            raise ConfigError(f"xds_secure_port must be in 1..65535, got {self.xds_secure_port}")
        if self.cert_ttl is not None and self.cert_ttl < 1:
            raise ConfigError("certificate TTL must be at least 1 second")
        if self.role == "node-proxy" and not self.node_name:
            raise ConfigError("a node proxy needs a node name")
        if self.pod_tokens_dir is not None and self.ca_address is None:
            raise ConfigError("pod tokens need a CA")
        if not self.trust_domain or "/" in self.trust_domain:
            raise ConfigError(f"invalid trust domain {self.trust_domain!r}")

    @property
    def proxy_id(self) -> str:
        """Envoy node id and node cluster: ``<name>.<namespace>``."""
        return f"{self.name}.{self.namespace}"

    @property
    def resolved_work_dir(self) -> Path:
        return (
            self.work_dir
            if self.work_dir is not None
            else default_work_dir(self.name, self.namespace)
        )

    @property
    def ca_enabled(self) -> bool:
        """Whether the agent gets a workload certificate and serves SDS."""
        return self.ca_address is not None

    @property
    def sds_socket_path(self) -> Path:
        """Where the agent serves SDS to its Envoy: ``<work_dir>/sds.sock``.

        Unix socket paths are limited to about 100 bytes (and the server first
        binds a staged name next to it), so a deep work dir gets a short private
        directory under the temp dir instead, named after the work dir.
        """
        path = self.resolved_work_dir / "sds.sock"
        if len(str(path)) <= 80:
            return path
        digest = hashlib.sha256(str(self.resolved_work_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"pilotfish-sds-{digest}" / "sds.sock"

    @property
    def spiffe_id(self) -> str:
        """``spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>``."""
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def xds_target(self) -> tuple[str, int]:
        """The (host, port) Envoy's ADS stream connects to: the mTLS port under xDS TLS."""
        if self.xds_tls:
            return (self.xds_secure_host or self.xds_host, self.xds_secure_port)
        return (self.xds_host, self.xds_port)

    @property
    def xds_targets(self) -> tuple[tuple[str, int], ...]:
        """Every control-plane replica's ADS address, ``xds_target`` first."""
        alternates = self.xds_secure_alternates if self.xds_tls else self.xds_alternates
        return tuple(dict.fromkeys((self.xds_target, *alternates)))

    @property
    def ca_addresses(self) -> tuple[str, ...]:
        """Every CA address (``HOST:PORT``), ``ca_address`` first; empty without a CA."""
        if self.ca_address is None:
            return ()
        return tuple(dict.fromkeys((self.ca_address, *self.ca_alternates)))

    @property
    def stats_bind(self) -> str:
        """Address of the Prometheus listener: all addresses under capture, else the pod IP."""
        return "0.0.0.0" if self.interception == "REDIRECT" else self.ips[0]


def default_work_dir(name: str, namespace: str) -> Path:
    """``$TMPDIR/pilotfish-agent-<name>.<namespace>``."""
    return Path(tempfile.gettempdir()) / f"pilotfish-agent-{name}.{namespace}"


def parse_label(text: str) -> tuple[str, str]:
    """Parse ``key=value`` (the value may be empty, the key may not)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"label must look like key=value, got {text!r}")
    return key, value.strip()


def parse_port_mapping(text: str) -> tuple[int, int]:
    """Parse ``TARGET=APP`` into two ports."""
    target, sep, app = text.partition("=")
    try:
        pair = (int(target), int(app)) if sep else None
    except ValueError:
        pair = None
    if pair is None or not all(0 < p < 65536 for p in pair):
        raise ConfigError(f"port mapping must look like TARGET=APP (two ports), got {text!r}")
    return pair


def parse_app_probe(text: str) -> AppProbe:
    """Parse ``http:<port>:<path>`` (path optional, default ``/``) or ``tcp:<port>``."""
    kind, _, rest = text.strip().partition(":")
    port_text, sep, path = rest.partition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if kind == "http" and 0 < port < 65536:
        path = path if sep else "/"
        return AppProbe("http", port, path if path.startswith("/") else "/" + path)
    if kind == "tcp" and 0 < port < 65536 and not sep:
        return AppProbe("tcp", port)
    raise ConfigError(f"app probe must look like http:PORT:PATH or tcp:PORT, got {text!r}")


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse seconds: ``90``, ``20s``, ``30m`` or ``24h`` (positive)."""
    text = text.strip().lower()
    scale = _DURATION_UNITS.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        value = -1.0
    if not 0 < value < 10 * 365 * 86400:
        raise ConfigError(f"duration must look like 90, 20s, 30m or 24h, got {text!r}")
    return value


def parse_address(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``HOST:PORT`` or ``[V6]:PORT`` (port optional when ``default_port`` is given)."""
    text = text.strip()
    host: str
    port_text: str
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not port_text and default_port is not None:
        port_text = str(default_port)
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise ConfigError(f"address must look like HOST:PORT, got {text!r}")
    return host, port


def parse_addresses(text: str, default_port: int | None = None) -> tuple[tuple[str, int], ...]:
    """Parse a comma-separated list of ``parse_address`` forms (at least one)."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise ConfigError(f"address list must look like HOST:PORT[,HOST:PORT...], got {text!r}")
    return tuple(parse_address(part, default_port) for part in parts)


def is_ip_address(host: str) -> bool:
    """True for a literal IPv4 or IPv6 address (not a DNS name)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_app_metrics(text: str) -> tuple[int, str]:
    """Parse ``PORT:PATH`` (``9080:/metrics``) of the app's metrics endpoint."""
    port_text, sep, path = text.partition(":")
    if not sep or not port_text.strip().isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"app metrics must look like PORT:PATH, got {text!r}")
    return int(port_text), "/" + path.strip().lstrip("/")
