"""The host's node proxy and its ambient pods, as the local mesh runs them.

Theory of operation. A pod whose data-plane mode is ambient
(``translate.ambient.pods.dataplane_mode``) gets no sidecar. Instead:

1. its network namespace gets the usual capture rules, with the HBONE port
   15008 left to reach its listener directly;
2. it is registered at once as a WorkloadEntry without labels
   (``ambient_entry``), whose annotations tell the control plane which host,
   network namespace, labels and ports it has: the node proxy's configuration
   gets the pod's listeners from it, while no Service selects it yet;
3. a CA token for the pod's identity is written into the node proxy's own
   token directory (``agent.pod_identities``): the node proxy can get that
   identity's certificate, and only for pods of its host;
4. the node proxy is started with the first ambient pod (one per host,
   supervised like a gateway: ``GatewayProcess`` with the ``node-proxy``
   role, confined as the proxy user with ``CAP_SYS_ADMIN`` alone so it can
   open sockets in pods' namespaces);
5. the pod's readiness process (``runtime.ambient_pod``) turns ready once the
   node proxy listens in the pod's namespace; then the app starts, and once
   the app is ready the entry is re-registered with the pod's labels (plus
   ``istio.io/dataplane-mode: ambient`` and Istio's mTLS label), which makes it
   an endpoint.

When the pod goes, its entry and token go; the node proxy gets its listeners
removed over xDS and keeps running (its Envoy is never restarted for pods).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable

from pilotfish.api.base import ObjectMeta
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.model.ambient import (
    DATAPLANE_AMBIENT,
    DATAPLANE_MODE_LABEL,
    NETNS_ANNOTATION,
    NODE_ANNOTATION,
    NODE_PROXY_NAME,
    NODE_PROXY_NAMESPACE,
    POD_LABELS_ANNOTATION,
    POD_PORTS_ANNOTATION,
)
from pilotfish.registry.model import WORKLOAD_NAME_ANNOTATION
from pilotfish.runtime.gateways import GatewayProcess, GatewaySpec
from pilotfish.runtime.isolation import Isolation, write_owned
from pilotfish.runtime.pod_spec import PodSpec
from pilotfish.runtime.registration import RUNTIME_SOURCE

__all__ = ["AmbientPods", "ambient_entry", "node_name", "token_file_name"]

TLS_MODE_LABEL = "security.istio.io/tlsMode"
NODE_PROXY_LABELS = (("app", NODE_PROXY_NAME),)


def node_name() -> str:
    """This host's name, which its node proxy and its ambient pods share."""
    return os.uname().nodename or "localhost"


def token_file_name(spec: PodSpec) -> str:
    """``<namespace>~<service account>~<pod>.token`` (``agent.pod_identities``)."""
    return f"{spec.namespace}~{spec.service_account}~{spec.local_id}.token"


def ambient_entry(spec: PodSpec, ip: str, netns: str, node: str, *, ready: bool) -> Resource:
    """The WorkloadEntry of an ambient pod: without labels until ``ready``."""
    labels = dict(spec.labels)
    shown = {**labels, DATAPLANE_MODE_LABEL: DATAPLANE_AMBIENT, TLS_MODE_LABEL: "istio"}
    if not ready:
        shown = {}
    annotations = {
        NODE_ANNOTATION: node,
        NETNS_ANNOTATION: netns,
        POD_LABELS_ANNOTATION: json.dumps(labels, sort_keys=True),
        POD_PORTS_ANNOTATION: json.dumps(sorted({p.container_port for p in spec.ports})),
    }
    if spec.workload:
        annotations[WORKLOAD_NAME_ANNOTATION] = spec.workload
    return Resource(
        api_version="networking.istio.io/v1",
        kind="WorkloadEntry",
        metadata=ObjectMeta(
            name=spec.name, namespace=spec.namespace, labels=shown, annotations=annotations
        ),
        spec=WorkloadEntrySpec(
            address=ip,
            labels=shown,
            service_account=spec.service_account,
            ports={p.name: p.container_port for p in spec.ports if p.name},
        ),
        source=RUNTIME_SOURCE,
    )


class AmbientPods:
    """The node proxy of this host, started on demand, and its pods' tokens.

    ``make_process(spec)`` builds the node proxy's ``GatewayProcess``;
    ``register_token(namespace, service_account, owner)`` asks the CA for a
    token (None without a CA); ``on_started(process)`` lets the supervisor list
    it with its gateways (status, state, stop).
    """

    def __init__(
        self,
        make_process: Callable[[GatewaySpec], GatewayProcess],
        register_token: Callable[[str, str, str], str | None],
        on_started: Callable[[GatewayProcess], None],
        free_port: Callable[[], int],
        isolation: Isolation | None,
    ) -> None:
        self._make = make_process
        self._register_token = register_token
        self._on_started = on_started
        self._free_port = free_port
        self._isolation = isolation
        self._lock = asyncio.Lock()
        self.node = node_name()
        self.process: GatewayProcess | None = None

    async def ensure_started(self) -> GatewayProcess:
        async with self._lock:
            if self.process is None:
                spec = GatewaySpec(
                    NODE_PROXY_NAME,
                    NODE_PROXY_NAMESPACE,
                    NODE_PROXY_LABELS,
                    "127.0.0.1",
                    self._free_port(),
                    self._free_port(),
                    status_port=self._free_port(),
                )
                process = self._make(spec)
                self._prepare_tokens_dir(process)
                self.process = process
                await process.start()
                self._on_started(process)
            return self.process

    def _prepare_tokens_dir(self, process: GatewayProcess) -> None:
        tokens = process.pod_tokens_dir
        uid, gid = self._owner()
        tokens.mkdir(parents=True, exist_ok=True)
        if uid >= 0:
            os.chown(tokens.parent, uid, gid)
            tokens.parent.chmod(0o700)
            os.chown(tokens, uid, gid)
        tokens.chmod(0o700)

    def _owner(self) -> tuple[int, int]:
        if self._isolation is None:
            return -1, -1
        return self._isolation.proxy_uid, self._isolation.proxy_gid

    def hand_token(self, spec: PodSpec) -> None:
        """Give the node proxy a CA token for ``spec``'s identity (see the module docstring)."""
        assert self.process is not None
        token = self._register_token(spec.namespace, spec.service_account, spec.local_id)
        if token is None:
            return
        uid, gid = self._owner()
        path = self.process.pod_tokens_dir / token_file_name(spec)
        write_owned(path, token.encode("ascii"), 0o600, uid, gid)

    def withdraw_token(self, spec: PodSpec) -> None:
        if self.process is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.process.pod_tokens_dir / token_file_name(spec)).unlink()
