"""Control-plane settings, built once in ``main()`` and passed down."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pilotfish.model.mesh_config import MeshConfig

__all__ = ["ControlPlaneSettings"]


@dataclass(frozen=True)
class ControlPlaneSettings:
    config_paths: tuple[str, ...] = field(default_factory=tuple)
    bind: str = "127.0.0.1"
    xds_port: int = 15010
    http_port: int = 15014
    quiet_period: float = 0.1  # push debounce: quiet time before pushing
    max_delay: float = 1.0  # push debounce: longest a change may wait
    poll_interval: float = 0.1  # config directory polling
    domain_suffix: str = "cluster.local"
    root_namespace: str = "istio-system"
    # When set, every request to the configuration API (``/api``, ``/apis``) must
    # carry ``Authorization: Bearer <api_token>``. Kept out of repr so it never
    # reaches a log line.
    api_token: str | None = field(default=None, repr=False)
    # Virtual IPs for Services without a clusterIP (the local runtime sets it).
    service_cidr: str | None = None
    # Extra addresses the xDS server also listens on (pods reach it via the mesh bridge).
    extra_xds_binds: tuple[str, ...] = ()
    # Every proxy writes an access log line per request to its output.
    access_log: bool = False
    # SPIFFE trust domain: identities are spiffe://<trust_domain>/ns/<ns>/sa/<sa>.
    trust_domain: str = "cluster.local"
    # Mesh CA: directory keeping the root (created 0700 on first start). None: no CA
    # and no TLS port.
    ca_dir: str | None = None
    # xDS over mTLS + the CA's CertificateService (only when ``ca_dir`` is set).
    secure_port: int = 15012
    # Lifetime of workload certificates (the longest a CSR may ask for).
    cert_ttl_seconds: int = 86400
    # The operator's own CA certificate and key (both or neither); used instead of
    # the root kept in ``ca_dir``.
    root_cert_file: str | None = None
    root_key_file: str | None = None
    # YAML/JSON list of {token, namespace, serviceAccount} accepted by the CA.
    ca_tokens_file: str | None = None
    # Where the CA persists registered tokens (SHA-256 digests, 0600) and reloads
    # them at start, so a restarted control plane keeps running pods' credentials.
    # None: in memory only. The local runtime uses ``<ca_dir>/pod-tokens.json``.
    ca_token_store: str | None = None
    # The mesh config file's contents (``--mesh-config``); None: Istio's defaults.
    # Build with ``with_mesh_config`` so that root namespace, trust domain and
    # access log above agree with it.
    mesh_config: MeshConfig | None = None

    def with_mesh_config(self, mesh: MeshConfig) -> ControlPlaneSettings:
        """These settings with ``mesh`` applied (its values win over the fields above)."""
        return dataclasses.replace(
            self,
            mesh_config=mesh,
            root_namespace=mesh.root_namespace,
            trust_domain=mesh.trust_domain,
            access_log=mesh.access_log,
        )

    def effective_mesh_config(self) -> MeshConfig:
        """The mesh config in force: the file's, with the fields above (which the
        command line may also set) as its root namespace, trust domain and access log."""
        base = self.mesh_config or MeshConfig()
        return base.model_copy(
            update={
                "root_namespace": self.root_namespace,
                "trust_domain": self.trust_domain,
                "access_log_file": "/dev/stdout" if self.access_log else "",
            }
        )
