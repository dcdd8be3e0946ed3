"""Control-plane settings, built once in ``main()`` and passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pilotfish.api.duration import parse_duration_ms
from pilotfish.api.limits import DEFAULT_LIMITS, ParseLimits
from pilotfish.control_plane_ports import CA_PORT, HTTP_API_PORT, XDS_MTLS_PORT, XDS_PORT
from pilotfish.model.mesh_config import DEFAULT_MESH_CONFIG, MeshConfig
from pilotfish.store.etcd_target import DEFAULT_PREFIX, EtcdTls

__all__ = ["GRACE_PERIOD_ENV", "ControlPlaneSettings"]

#: Istio's variable for how long a joined workload's entry outlives its proxy's stream.
GRACE_PERIOD_ENV = "PILOT_WORKLOAD_ENTRY_GRACE_PERIOD"


def _grace_from_env() -> float:
    """``$PILOT_WORKLOAD_ENTRY_GRACE_PERIOD`` (a duration such as ``10s``), else 10 s."""
    text = os.environ.get(GRACE_PERIOD_ENV, "").strip()
    if not text:
        return 10.0
    try:
        return parse_duration_ms(text) / 1000
    except ValueError as exc:
        raise ValueError(f"${GRACE_PERIOD_ENV}: {exc}") from None


@dataclass(frozen=True)
class ControlPlaneSettings:
    config_paths: tuple[str, ...] = field(default_factory=tuple)
    # An etcd cluster holding the configuration instead of ``config_paths``
    # (``etcd://HOST:PORT[,...]``, ``etcds://`` with ``etcd_tls``), keys under
    # ``etcd_prefix``. Several control planes may share it; singleton jobs then
    # run on the leader only (``controlplane.leadership``).
    config_store: str | None = None
    etcd_tls: EtcdTls | None = None
    etcd_prefix: str = DEFAULT_PREFIX
    # Lease TTL of the leader election among control planes sharing the etcd.
    leader_ttl_seconds: int = 10
    bind: str = "127.0.0.1"
    xds_port: int = XDS_PORT
    # Serve unauthenticated xDS on ``xds_port``. Off, only the mTLS port serves
    # proxies (``pilotfish up`` turns it off whenever the mesh CA runs).
    plaintext_xds: bool = True
    http_port: int = HTTP_API_PORT
    quiet_period: float = 0.1  # push debounce: quiet time before pushing
    max_delay: float = 1.0  # push debounce: longest a change may wait
    poll_interval: float = 0.1  # config directory polling
    domain_suffix: str = "cluster.local"
    # The HTTP API always requires ``Authorization: Bearer <token>`` (but for
    # /ready and /metrics; see ``controlplane.auth``). The token: ``api_token``
    # when set (kept out of repr so it never reaches a log line), else the one in
    # ``api_token_file`` (created 0600 at first start, reused after), else a
    # random one held only in memory (``ControlPlane.api_token``).
    api_token: str | None = field(default=None, repr=False)
    api_token_file: str | None = None
    # Virtual IPs for Services without a clusterIP (the local runtime sets it).
    service_cidr: str | None = None
    # Extra addresses the xDS server also listens on (pods reach it via the mesh bridge).
    extra_xds_binds: tuple[str, ...] = ()
    # Extra addresses the HTTP API also listens on (other hosts' nodes call it there).
    extra_http_binds: tuple[str, ...] = ()
    # Mesh CA: directory keeping the root (created 0700 on first start). None: no CA
    # and no TLS ports.
    ca_dir: str | None = None
    # The CA's CertificateService over server TLS (only when ``ca_dir`` is set).
    secure_port: int = CA_PORT
    # xDS over mTLS: client certificates from the mesh CA required (with ``ca_dir``).
    xds_mtls_port: int = XDS_MTLS_PORT
    # Lifetime of workload certificates (the longest a CSR may ask for).
    cert_ttl_seconds: int = 86400
    # The operator's own CA certificate and key (both or neither); used instead of
    # the root kept in ``ca_dir``.
    root_cert_file: str | None = None
    root_key_file: str | None = None
    # YAML/JSON list of {token, namespace, serviceAccount} accepted by the CA.
    ca_tokens_file: str | None = None
    # Development only: serve credentialName Secrets on the plain-text xDS port to
    # the namespace a node claims (no identity is verified there). Off: only
    # streams on the mTLS port, to their certificate's namespace.
    plaintext_secrets: bool = False
    # Where the CA persists registered tokens (SHA-256 digests, 0600) and reloads
    # them at start, so a restarted control plane keeps running pods' credentials.
    # None: in memory only. The local runtime uses ``<ca_dir>/pod-tokens.json``.
    ca_token_store: str | None = None
    # The mesh config in force: root namespace, SPIFFE trust domain (identities are
    # spiffe://<trust domain>/ns/<ns>/sa/<sa>), access logs, retries, outbound
    # policy, auto mTLS. The file's (``--mesh-config``) or Istio's defaults, with
    # command-line overrides applied once (``mesh_config.with_overrides``).
    mesh: MeshConfig = DEFAULT_MESH_CONFIG
    # Bounds on parsing one config file or API request body (bytes, nodes, alias
    # expansion, depth, documents): see ``api.limits``.
    parse_limits: ParseLimits = DEFAULT_LIMITS
    # Freeze the loaded configuration out of the cyclic collector's sight at start
    # (``gc.collect(); gc.freeze()``) so full collections stay short during pushes.
    # A process-wide side effect: only the standalone ``pilotfish control-plane``
    # turns it on; an embedded control plane (the runtime, tests) leaves gc alone.
    freeze_gc: bool = False
    # How long an auto-registered WorkloadEntry outlives its proxy's last xDS stream
    # (``controlplane.auto_registration``).
    workload_entry_grace_seconds: float = field(default_factory=_grace_from_env)
