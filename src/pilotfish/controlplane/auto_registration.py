"""WorkloadGroup auto-registration: a joined proxy is a WorkloadEntry while connected.

Theory of operation (Istio's ``PILOT_ENABLE_WORKLOAD_ENTRY_AUTOREGISTRATION``).
A proxy whose node metadata names a WorkloadGroup (``AUTO_REGISTER_GROUP``,
sent by agents that ``pilotfish join`` runs) and that connected on the mTLS
port, where its namespace and service account are its certificate's, is
registered: the control plane writes a WorkloadEntry built from the group
(``metadata.labels`` and ``annotations``, ``template`` ports, network,
locality, weight, service account) with the proxy's first instance IP as
address, named ``<group>-<ip>``. The service account must be the group's
``template.serviceAccount``: a token for another identity cannot join the group.

The entry is written to the control plane's config store (the primary: the
config directory or etcd), so every replica sharing that store sees it and
serves its endpoints. Istio's annotations record who holds it:
``istio.io/autoRegistrationGroup``, ``istio.io/workloadController`` (this
replica's id, stable across restarts), ``istio.io/connectedAt`` and, once the
last stream of that proxy here ended, ``istio.io/disconnectedAt``. After
``grace`` seconds (Istio's ``PILOT_WORKLOAD_ENTRY_GRACE_PERIOD``, 10 s)
without a reconnect the entry is deleted. A proxy that reconnects to another
replica meanwhile is taken over by it (controller changes, disconnectedAt
goes), so the first replica's timer finds the entry no longer its own and
leaves it.

A periodic sweep repairs what events cannot: an entry still held by this
replica's id without a stream here (this replica restarted) is marked
disconnected; an entry disconnected longer than the grace is deleted by any
replica; an entry of a proxy connected here that went missing is written
again. Entries without the group annotation (written by a user) are never
touched. Store writes run on the event loop, as the HTTP API's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.networking.workload_group import WorkloadGroupSpec, member_name
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.model.proxy_view import (
    META_AUTO_REGISTER_GROUP,
    META_INSTANCE_IPS,
    META_LABELS,
    META_NAMESPACE,
    META_SERVICE_ACCOUNT,
)
from pilotfish.runtime.registration import workload_entry
from pilotfish.store import Store, StoreConflict, StoreError

__all__ = [
    "CONNECTED_AT",
    "CONTROLLER",
    "DISCONNECTED_AT",
    "GROUP_ANNOTATION",
    "AutoRegistration",
]

GROUP_ANNOTATION = "istio.io/autoRegistrationGroup"
CONTROLLER = "istio.io/workloadController"
CONNECTED_AT = "istio.io/connectedAt"
DISCONNECTED_AT = "istio.io/disconnectedAt"
TLS_MODE_LABEL = "security.istio.io/tlsMode"

_log = logging.getLogger("pilotfish.controlplane.autoregistration")


def _stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="milliseconds")


def _parse_stamp(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class AutoRegistration:
    """The xDS server's connection listener that keeps joined proxies' WorkloadEntries."""

    def __init__(
        self,
        store: Callable[[], Store],
        controller: str,
        *,
        grace: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.controller = controller
        self.grace = grace
        self._clock = clock
        self._streams: dict[int, ResourceKey] = {}
        self._entries: dict[ResourceKey, Resource] = {}  # what this replica registered
        self._sweeper: asyncio.Task[None] | None = None
        self._timers: dict[ResourceKey, asyncio.TimerHandle] = {}
        self._closed = False

    def start(self) -> None:
        """Sweep now and every grace/2 (call on the event loop)."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def close(self) -> None:
        """Stop: no more writes. Entries stay (another replica or our restart decides)."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    # -- the xDS server's events -----------------------------------------------------

    def proxy_connected(
        self, stream_id: int, node_id: str, metadata: Mapping[str, Any], *, verified: bool
    ) -> None:
        group = str(metadata.get(META_AUTO_REGISTER_GROUP, "") or "")
        if not group or self._closed:
            return
        if not verified:
            _log.warning("not registering %s in %s: only over mTLS", node_id, group)
            return
        entry = self._entry_for(node_id, group, metadata)
        if entry is None:
            return
        self._streams[stream_id] = entry.key
        self._entries[entry.key] = entry
        timer = self._timers.pop(entry.key, None)
        if timer is not None:
            timer.cancel()
        self._write(entry)

    def proxy_disconnected(self, stream_id: int) -> None:
        key = self._streams.pop(stream_id, None)
        if key is None or self._closed or key in self._streams.values():
            return
        entry = self._entries.pop(key, None)
        current = self._store().get(key)
        if entry is None or not self._mine(current):
            return
        assert current is not None
        self._write(_annotated(current, {DISCONNECTED_AT: _stamp(self._clock())}))
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self.grace, self._expire, key)

    # -- entries ---------------------------------------------------------------------

    def _entry_for(self, node_id: str, group: str, metadata: Mapping[str, Any]) -> Resource | None:
        namespace = str(metadata.get(META_NAMESPACE, "") or "")
        account = str(metadata.get(META_SERVICE_ACCOUNT, "") or "default")
        ip = str(metadata.get(META_INSTANCE_IPS, "") or "").split(",")[0].strip()
        found = self._store().get(ResourceKey("WorkloadGroup", namespace, group))
        if found is None or not isinstance(found.spec, WorkloadGroupSpec) or not ip:
            _log.warning("not registering %s: no WorkloadGroup %s/%s", node_id, namespace, group)
            return None
        spec = found.spec
        template = spec.template
        if account != (template.service_account or "default"):
            _log.warning(
                "not registering %s in WorkloadGroup %s/%s: service account %s is not the "
                "group's %s",
                node_id,
                namespace,
                group,
                account,
                template.service_account or "default",
            )
            return None
        proxy_labels = metadata.get(META_LABELS) or {}
        labels = {**template.labels, **spec.metadata.labels}
        labels.update({str(k): str(v) for k, v in dict(proxy_labels).items() if k not in labels})
        labels[TLS_MODE_LABEL] = "istio"  # its sidecar holds a mesh certificate
        name = member_name(group, ip)
        base = workload_entry(name, namespace, ip, labels, account, template.ports, group)
        assert isinstance(base.spec, WorkloadEntrySpec)
        entry_spec = base.spec.model_copy(
            update={
                "network": template.network,
                "locality": template.locality,
                "weight": template.weight,
            }
        )
        annotations = {
            **spec.metadata.annotations,
            **base.metadata.annotations,
            GROUP_ANNOTATION: group,
            CONTROLLER: self.controller,
            CONNECTED_AT: _stamp(self._clock()),
        }
        metadata_ = base.metadata.model_copy(update={"annotations": annotations})
        return dataclasses.replace(base, spec=entry_spec, metadata=metadata_, source=None)

    def _mine(self, current: Resource | None) -> bool:
        if current is None:
            return False
        annotations = current.metadata.annotations
        return GROUP_ANNOTATION in annotations and annotations.get(CONTROLLER) == self.controller

    def _write(self, entry: Resource) -> None:
        current = self._store().get(entry.key)
        if current is not None and GROUP_ANNOTATION not in current.metadata.annotations:
            _log.warning("not registering %s: a WorkloadEntry of that name exists", entry.key)
            return
        try:
            self._store().apply(entry)
        except StoreError as exc:
            _log.error("cannot register %s: %s", entry.key, exc)
            return
        _log.info("registered %s (%s)", entry.key, _state(entry))

    def _expire(self, key: ResourceKey) -> None:
        self._timers.pop(key, None)
        if key in self._streams.values() or self._closed:
            return
        current = self._store().get(key)
        if current is None or not self._mine(current) or not self._expired(current):
            return  # another replica took it over, or it came back
        self._delete(current)

    def _expired(self, current: Resource | None) -> bool:
        if current is None or GROUP_ANNOTATION not in current.metadata.annotations:
            return False
        since = _parse_stamp(current.metadata.annotations.get(DISCONNECTED_AT, ""))
        # A hundredth of a second of slack: the timer may fire a little early.
        return since is not None and self._clock() - since >= self.grace - 0.01

    def _delete(self, expired: Resource) -> None:
        """Remove ``expired`` unless it changed since it was read: the store may not
        have heard yet that another replica took the entry over (etcd's watch lags
        its writes), and only the compare in the delete tells."""
        key = expired.key
        try:
            self._store().delete(key, expected=expired)
        except KeyError:
            return
        except StoreConflict:
            _log.info("kept %s: it changed since it was read (another replica holds it?)", key)
            return
        except StoreError as exc:
            _log.error("cannot remove %s: %s", key, exc)
            return
        _log.info("removed %s: its proxy left more than %.0fs ago", key, self.grace)

    # -- the sweep -------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:
                _log.exception("auto-registration sweep failed")
            await asyncio.sleep(max(self.grace / 2, 0.5))

    def sweep(self) -> None:
        """Repair the store's auto-registered entries (see the module docstring)."""
        if self._closed:
            return
        store = self._store()
        connected = set(self._streams.values())
        for key in connected:
            current = store.get(key)
            if current is None or DISCONNECTED_AT in current.metadata.annotations:
                self._write(self._entries[key])
        for current in store.list("WorkloadEntry"):
            annotations = current.metadata.annotations
            if GROUP_ANNOTATION not in annotations or current.key in connected:
                continue
            if self._expired(current):
                self._delete(current)
            elif self._mine(current) and DISCONNECTED_AT not in annotations:
                self._write(_annotated(current, {DISCONNECTED_AT: _stamp(self._clock())}))


def _annotated(resource: Resource, extra: Mapping[str, str]) -> Resource:
    annotations = {**resource.metadata.annotations, **extra}
    return dataclasses.replace(
        resource, metadata=resource.metadata.model_copy(update={"annotations": annotations})
    )


def _state(entry: Resource) -> str:
    annotations = entry.metadata.annotations
    if DISCONNECTED_AT in annotations:
        return f"disconnected at {annotations[DISCONNECTED_AT]}"
    return f"connected to {annotations.get(CONTROLLER, '?')}"
