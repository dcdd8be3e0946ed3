"""A node proxy agent's certificates for the ambient pods of its host.

Theory of operation. The runtime hands the node proxy's agent one CA token per
ambient pod of the host, as a file ``<namespace>~<service account>~<pod>.token``
in the agent's ``--pod-tokens-dir`` (its own private directory), and removes the
file when the pod goes. The CA registered each token for exactly that pod's
namespace and service account, so the agent can obtain certificates for the
identities of its host's pods and no others: a node proxy cannot forge an
identity whose pod is not there.

``PodIdentities`` polls the directory. For each new token it obtains a
certificate (retrying while the CA is unreachable) and keeps it renewed like
the agent's own (``CertificateRotator``); each is served over SDS under its
SPIFFE id (``SdsServer.set_named_certificate``), which is the secret name the
node proxy's listeners and clusters ask for. Pods of one service account share
the secret; it is withdrawn when the last of their tokens is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pilotfish.agent.ca_client import CaAuthError, CaClient
from pilotfish.agent.identity import WorkloadCertificate, spiffe_id
from pilotfish.agent.rotation import CertificateIssuer, CertificateRotator, RotationPolicy
from pilotfish.agent.sds_server import SdsServer

__all__ = ["PodIdentities", "parse_token_name"]

_SUFFIX = ".token"
_POLL_INTERVAL = 0.5


def parse_token_name(name: str) -> tuple[str, str, str] | None:
    """(namespace, service account, pod) of a token file name, or None."""
    if not name.endswith(_SUFFIX):
        return None
    parts = name[: -len(_SUFFIX)].split("~")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


@dataclass
class _Pod:
    identity: str
    client: CaClient
    task: asyncio.Task[None]
    served: bool = field(default=False)


class PodIdentities:
    """Certificates for the token files in ``directory``; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        sds: SdsServer,
        *,
        ca_address: str,
        root_pem: bytes,
        trust_domain: str,
        ttl_seconds: int | None = None,
        policy: RotationPolicy | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._dir = directory
        self._sds = sds
        self._ca = ca_address
        self._root = root_pem
        self._trust_domain = trust_domain
        self._ttl = ttl_seconds
        self._policy = policy or RotationPolicy()
        self._log = logger or logging.getLogger("pilotfish.agent.pods")
        self._pods: dict[str, _Pod] = {}
        # Token files the CA refused (a token not of the identity its name claims).
        self.refused: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def identities(self) -> frozenset[str]:
        """The SPIFFE ids currently served."""
        return frozenset(p.identity for p in self._pods.values() if p.served)

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="pilotfish-pod-identities")

    async def _watch(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep(_POLL_INTERVAL)

    def scan(self) -> None:
        """Start and stop certificates to match the token files present now."""
        try:
            names = {p.name for p in self._dir.iterdir()}
        except OSError:
            names = set()
        present = {n: parsed for n in names if (parsed := parse_token_name(n)) is not None}
        for name in sorted(set(self._pods) - set(present)):
            self._drop(name)
        for name, (namespace, account, pod) in sorted(present.items()):
            if name not in self._pods:
                self._add(name, spiffe_id(self._trust_domain, namespace, account), pod)

    def _add(self, name: str, identity: str, pod: str) -> None:
        client = CaClient(self._ca, self._root, self._dir / name)
        issuer = CertificateIssuer(
            client,
            identity,
            ttl_seconds=self._ttl,
            fallback_root_pem=self._root.decode("ascii", errors="replace"),
        )
        entry: _Pod

        def serve(cert: WorkloadCertificate) -> None:
            entry.served = True
            self._sds.set_named_certificate(identity, cert)

        async def run() -> None:
            try:
                first = await issuer.issue()
            except CaAuthError as exc:
                self._log.error("the CA refused pod %s's token for %s: %s", pod, identity, exc)
                self.refused.add(name)
                return
            self._log.info(
                "certificate for pod %s: %s (serial %s)", pod, identity, first.serial_hex
            )
            serve(first)
            rotator = CertificateRotator(
                lambda: issuer.issue(retry=False), serve, policy=self._policy
            )
            await rotator.run(first)

        task = asyncio.create_task(run(), name=f"pilotfish-pod-identity-{pod}")
        entry = _Pod(identity, client, task)
        self._pods[name] = entry

    def _drop(self, name: str) -> None:
        entry = self._pods.pop(name)
        self.refused.discard(name)
        entry.task.cancel()
        asyncio.get_running_loop().create_task(entry.client.close())
        if not any(p.identity == entry.identity for p in self._pods.values()):
            self._sds.set_named_certificate(entry.identity, None)
            self._log.info("withdrew %s: no pod of it is left", entry.identity)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for entry in self._pods.values():
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await entry.task
            await entry.client.close()
        self._pods.clear()
