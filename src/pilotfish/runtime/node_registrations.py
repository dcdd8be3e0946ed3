"""A node's ready pods as WorkloadEntries on the remote control planes.

Theory of operation. The node's runtime registers ready pods in its own
in-memory store exactly as ``pilotfish up`` does (``mesh_pods``). This module
mirrors that store to the control planes' configuration API, as a kubelet
reports its pods to the API server: no etcd credentials on the node, and the
API's validation applies. Each entry is renamed ``<pod>-<node>`` (pod names
are per host; two nodes may run replicas of one Workload) and annotated
``pilotfish.io/node: <node>``. The control plane writes it to its store
(etcd with replicas), so every replica serves it.

``sync`` PUTs what is new or changed and DELETEs what left, remembering what
it published; a failed call is retried by the next ``sync`` (``run`` retries
every ``retry_s`` while anything is pending). ``remove_stale`` deletes the
node's entries that it does not hold now (a node that crashed and starts
again); ``withdraw`` deletes everything it published (on stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pilotfish.api.resource import Resource
from pilotfish.runtime.remote_control_plane import RemoteControlPlane, RemoteError
from pilotfish.store import MemoryStore
from pilotfish.store._render import document_of

__all__ = ["NODE_ANNOTATION", "NodeRegistrations", "entry_path", "remote_document", "remote_name"]

log = logging.getLogger("pilotfish.runtime.node")

NODE_ANNOTATION = "pilotfish.io/node"
ENTRIES_PATH = "/apis/networking.istio.io/v1/workloadentries"

_Key = tuple[str, str]  # (namespace, remote name)


def remote_name(pod: str, node: str) -> str:
    return f"{pod}-{node}"


def entry_path(namespace: str, name: str) -> str:
    return f"/apis/networking.istio.io/v1/namespaces/{namespace}/workloadentries/{name}"


def remote_document(resource: Resource, node: str) -> dict[str, Any]:
    """The entry as the node publishes it: renamed, annotated with the node."""
    doc = document_of(resource)
    meta = dict(doc["metadata"])
    meta["name"] = remote_name(resource.name, node)
    meta["annotations"] = {**(meta.get("annotations") or {}), NODE_ANNOTATION: node}
    return {**doc, "metadata": meta}


def node_entries(items: list[dict[str, Any]], node: str) -> set[_Key]:
    """The entries of a WorkloadEntry list that ``node`` published."""
    out: set[_Key] = set()
    for item in items:
        meta = item.get("metadata") or {}
        if (meta.get("annotations") or {}).get(NODE_ANNOTATION) == node:
            out.add((str(meta.get("namespace", "")), str(meta.get("name", ""))))
    return out


class NodeRegistrations:
    def __init__(
        self, local: MemoryStore, remote: RemoteControlPlane, node: str, retry_s: float = 1.0
    ) -> None:
        self._local = local
        self._remote = remote
        self._node = node
        self._retry_s = retry_s
        self.published: dict[_Key, dict[str, Any]] = {}
        self._pending = False

    def desired(self) -> dict[_Key, dict[str, Any]]:
        out: dict[_Key, dict[str, Any]] = {}
        for resource in self._local.list(kind="WorkloadEntry"):
            doc = remote_document(resource, self._node)
            out[(resource.namespace, doc["metadata"]["name"])] = doc
        return out

    async def sync(self) -> bool:
        """Publish the local store's entries; True when nothing is left pending."""
        want = self.desired()
        ok = True
        for key, doc in want.items():
            if self.published.get(key) == doc:
                continue
            ok = await self._put(key, doc) and ok
        for key in [k for k in self.published if k not in want]:
            ok = await self._delete(key) and ok
        self._pending = not ok
        return ok

    async def _put(self, key: _Key, doc: dict[str, Any]) -> bool:
        if not await self._write("PUT", key, doc, (200, 201)):
            return False
        self.published[key] = doc
        return True

    async def _delete(self, key: _Key) -> bool:
        if not await self._write("DELETE", key, None, (200, 404)):  # 404: gone already
            return False
        self.published.pop(key, None)
        return True

    async def _write(
        self, method: str, key: _Key, doc: dict[str, Any] | None, ok: tuple[int, ...]
    ) -> bool:
        """One call; False (logged, retried by the next sync) unless the answer is ``ok``."""
        try:
            status, answer = await self._remote.call(method, entry_path(*key), doc)
        except RemoteError as exc:
            log.warning("%s %s/%s: %s", method, *key, exc)
            return False
        if status not in ok:
            log.error("%s %s/%s refused: HTTP %s %s", method, *key, status, answer)
            return False
        return True

    async def remove_stale(self) -> int:
        """Delete this node's entries it does not hold now; returns how many."""
        _, items = await self._remote.list_items(ENTRIES_PATH)
        stale = node_entries(items, self._node) - self.desired().keys()
        for key in sorted(stale):
            self.published[key] = {}  # so a failed delete is retried by sync
            await self._delete(key)
        return len(stale)

    async def withdraw(self) -> None:
        """Delete everything this node published (best effort, on stop)."""
        for key in list(self.published):
            await self._delete(key)

    async def run(self) -> None:
        """Follow the local store until cancelled."""
        seen = -1
        while True:
            if seen >= 0:
                waiter = self._local.wait_for_change(seen)
                if self._pending:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter, self._retry_s)
                else:
                    await waiter
            seen = self._local.revision
            await self.sync()
