"""The agent's workload identity, assembled: CA client, first certificate, SDS, rotation.

``WorkloadIdentity.start()`` returns only once the agent holds its first
certificate and serves it on the SDS socket, so the caller can start Envoy
right after (Envoy's ``xds-grpc`` and mTLS clusters need it). Rotation then
runs in a background task until ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from pilotfish.agent.ca_client import CaClient
from pilotfish.agent.config import AgentConfig, ConfigError
from pilotfish.agent.pod_identities import PodIdentities
from pilotfish.agent.rotation import CertificateIssuer, CertificateRotator, RotationPolicy
from pilotfish.agent.sds_server import SdsServer
from pilotfish.sds_names import SDS_WORKLOAD_CERT

__all__ = ["WorkloadIdentity"]


class WorkloadIdentity:
    """Certificates for ``config``'s SPIFFE id, served to Envoy over SDS. One event loop."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        policy: RotationPolicy | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if config.ca_address is None or config.ca_token_file is None:
            raise ConfigError("workload identity needs a CA address and a CA token file")
        if config.root_cert_file is None:
            raise ConfigError("workload identity needs a root cert file")
        self._config = config
        self._policy = policy or RotationPolicy()
        self._log = logger or logging.getLogger("pilotfish.agent.identity")
        self._client: CaClient | None = None
        self._rotator: CertificateRotator | None = None
        self._rotation: asyncio.Task[None] | None = None
        self.pods: PodIdentities | None = None
        self.sds = SdsServer(config.sds_socket_path, uid=config.envoy_uid, gid=config.envoy_gid)

    @property
    def spiffe_id(self) -> str:
        return self._config.spiffe_id

    @property
    def rotator(self) -> CertificateRotator | None:
        return self._rotator

    async def start(self) -> None:
        """Get the first certificate (retrying while the CA is unreachable), serve SDS.

        Raises ``CaAuthError`` when the CA refuses the token or the identity,
        ``IdentityError`` when its answer does not match the request,
        ``OSError`` when the root cert file cannot be read or the socket bound.
        Undoes what it started on failure.
        """
        config = self._config
        assert config.ca_address is not None and config.ca_token_file is not None
        assert config.root_cert_file is not None
        root_pem = config.root_cert_file.read_bytes()
        self._client = CaClient(config.ca_addresses, root_pem, config.ca_token_file)
        issuer = CertificateIssuer(
            self._client,
            config.spiffe_id,
            ttl_seconds=config.cert_ttl,
            fallback_root_pem=root_pem.decode("ascii", errors="replace"),
        )
        try:
            self._log.info(
                "requesting a certificate for %s from %s",
                self.spiffe_id,
                ", ".join(config.ca_addresses),
            )
            first = await issuer.issue()
            self.sds.set_certificate(first)
            await self.sds.start()
        except BaseException:
            await self.close()
            raise
        self._log.info(
            "certificate for %s: serial %s, valid until %s",
            first.spiffe_id,
            first.serial_hex,
            first.summary()["not_after_iso"],
        )
        self._rotator = CertificateRotator(
            lambda: issuer.issue(retry=False), self.sds.set_certificate, policy=self._policy
        )
        self._rotation = asyncio.create_task(
            self._rotator.run(first), name=f"pilotfish-cert-rotation-{config.proxy_id}"
        )
        if config.pod_tokens_dir is not None:
            self.pods = PodIdentities(
                config.pod_tokens_dir,
                self.sds,
                ca_address=config.ca_address,
                root_pem=root_pem,
                trust_domain=config.trust_domain,
                ttl_seconds=config.cert_ttl,
                policy=self._policy,
                logger=self._log.getChild("pods"),
            )
            self.pods.start()

    def readiness_gate(self) -> str | None:
        """None once Envoy has accepted a workload certificate, else why not ready."""
        if self.sds.certificate is None:
            return "waiting for the workload certificate"
        # Any version: a rotation in flight must not make the proxy un-ready.
        if not self.sds.served(SDS_WORKLOAD_CERT):
            return "waiting for envoy to accept the workload certificate"
        return None

    def summary(self) -> Mapping[str, object] | None:
        """The current certificate's public facts for ``GET /identity`` (None before one)."""
        cert = self.sds.certificate
        if cert is None:
            return None
        info = dict(cert.summary())
        info["served"] = self.sds.acked(SDS_WORKLOAD_CERT)
        info["rotations"] = self._rotator.rotations if self._rotator is not None else 0
        if self.pods is not None:
            info["pod_identities"] = sorted(self.pods.identities())
        return info

    async def close(self) -> None:
        pods, self.pods = self.pods, None
        if pods is not None:
            await pods.close()
        task, self._rotation = self._rotation, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sds.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()
