"""A store kept in etcd, shared by every control plane that points at it.

Theory of operation
-------------------
Each object is one etcd key (``etcd_keys``: Kubernetes' layout under
``/registry``) holding its JSON document (``etcd_values``). The store serves
reads from a local mirror of the key range, as a Kubernetes informer does:
``start()`` lists the range, then ``etcd_watch.Watcher`` follows it from the
next revision on, through lost connections and compactions.

Revisions: the store's ``revision`` is etcd's: the mod revision of the latest
change the mirror holds, so every replica reports the same number for the
same configuration. ``seen`` is the etcd revision the mirror reflects
exactly (it moves past revisions that changed nothing here: other keys,
progress notifications); the watch resumes from ``seen + 1``.

Last good: a value that is not one valid object (written by another tool)
is reported in ``diagnostics()`` under its key (``etcd:/registry/...``) and
the object it held before, if any, keeps being served; deleting the key
removes both.

Writes are synchronous, as the ``Store`` interface is: one blocking HTTP
call to etcd (``EtcdClient.call``, bounded by its timeout), made from the
event loop's thread. Every object is validated and encoded first, every
problem collected: any error refuses the whole write and nothing is sent.
``apply_all`` is one etcd transaction, so all objects land at one revision
or none does. The same transaction first reads the keys modified after
``seen`` and counts the range: when neither shows a change the mirror has
not seen, the mirror takes the written objects at once (read-your-writes,
no waiting for the watch); otherwise another writer got in between, and the
mirror lists the range at the write's revision before returning. Either way
the watch later drops those events as not newer than ``seen``. A delete of
an object as it was read (``delete(key, expected)``) also compares the key's
mod revision with the mirror's, so a change the watch has not brought in yet
is not lost to it.
All methods must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import builtins  # the class defines a method named ``list``
import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pilotfish.api import loader
from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.limits import DEFAULT_LIMITS, ParseLimits
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store._common import (
    Validator,
    check_batch_keys,
    check_expected,
    same_content,
    select,
    sorted_by_key,
)
from pilotfish.store.base import Store, StoreConflict, StoreError
from pilotfish.store.etcd_client import EtcdClient, EtcdError, EtcdUnavailable, b64, unb64
from pilotfish.store.etcd_keys import DEFAULT_PREFIX, KeyLayout
from pilotfish.store.etcd_values import TextLoader, decode, encode
from pilotfish.store.etcd_watch import Watcher

__all__ = ["EtcdStore"]

_log = logging.getLogger("pilotfish.store.etcd")


@dataclass(frozen=True, slots=True)
class _Entry:
    """One key of the range: its latest value's revision and problems, and the
    object served for it (the last good one)."""

    mod_revision: int
    resource: Resource | None
    diagnostics: tuple[Diagnostic, ...] = ()


class EtcdStore(Store):
    """``Store`` over an etcd key range; see the module docstring.

    ``client`` speaks to the cluster (``EtcdClient``); ``prefix`` is the key
    prefix (``/registry``, as Kubernetes); ``validator`` (optional) may refuse
    writes; ``start_timeout`` bounds how long ``start()`` tries to reach etcd.
    """

    def __init__(
        self,
        client: EtcdClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        validator: Validator | None = None,
        limits: ParseLimits = DEFAULT_LIMITS,
        load_text: TextLoader | None = None,
        start_timeout: float = 10.0,
        retry_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.client = client
        self.layout = KeyLayout(prefix)
        self._validator = validator
        self._load_text = load_text or functools.partial(loader.load_text, limits=limits)
        self._start_timeout = start_timeout
        self._entries: dict[str, _Entry] = {}
        self._ordered: tuple[Resource, ...] | None = None
        self._seen = 0
        self._loaded = False
        self._problem: str | None = None  # why the watch is down, while it is
        self.watcher = Watcher(
            client, self.layout.range_start, self.layout.range_end, self, retry_max=retry_max
        )
        self._task: asyncio.Task[None] | None = None

    # -- reading -------------------------------------------------------------------

    @property
    def seen(self) -> int:
        """The etcd revision the mirror reflects exactly."""
        return self._seen

    def get(self, key: ResourceKey) -> Resource | None:
        try:
            entry = self._entries.get(self.layout.key(key))
        except KeyError:  # a kind without a key layout is never stored
            return None
        return entry.resource if entry is not None else None

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        """Matching resources sorted by kind, namespace, name."""
        if self._ordered is None:
            self._ordered = sorted_by_key(
                e.resource for e in self._entries.values() if e.resource is not None
            )
        return select(self._ordered, kind, namespace)

    def diagnostics(self) -> builtins.list[Diagnostic]:
        """Problems of stored values (by key), then the watch's, if it is down."""
        found = [d for key in sorted(self._entries) for d in self._entries[key].diagnostics]
        if self._problem is not None:
            found.append(
                Diagnostic(
                    Severity.WARNING,
                    f"not following etcd ({self._problem}); serving the configuration "
                    f"of revision {self._revision}",
                    SourceRef(str(self.client.endpoints)),
                )
            )
        return found

    # -- watching ------------------------------------------------------------------

    async def start(self) -> None:
        """List the range (trying for up to ``start_timeout``), then follow it."""
        if self._task is not None:
            return
        if not self._loaded:
            await self._first_load()
        self._task = asyncio.create_task(self.watcher.run(), name="pilotfish-etcd-watch")

    async def _first_load(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        pause = 0.1
        while True:
            try:
                await self.watcher.list_once()
                return
            except EtcdError as exc:
                if loop.time() + pause > deadline:
                    raise StoreError(
                        f"cannot load the configuration from {self.client.endpoints}: {exc}"
                    ) from exc
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def close(self) -> None:
        """Stop following etcd (the mirror stays; ``start()`` resumes from ``seen``)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()

    # -- the watcher's side (``etcd_watch.Mirror``) -------------------------------

    def fold_listing(self, kvs: Sequence[dict[str, Any]], revision: int) -> None:
        if self._loaded and revision <= self._seen:
            return  # older than what a write already folded
        before = self._entries
        after: dict[str, _Entry] = {}
        for kv in kvs:
            key = unb64(kv["key"]).decode("utf-8", "replace")
            mod = int(kv.get("mod_revision", 0))
            known = before.get(key)
            if known is not None and known.mod_revision == mod:
                after[key] = known  # unchanged: keep the parsed object
            else:
                after[key] = self._entry(key, unb64(kv.get("value", "")), mod, known)
        changed = after.keys() != before.keys() or any(after[k] is not before[k] for k in after)
        self._entries = after
        self._seen = revision
        self._loaded = True
        self._changed(changed, revision)

    def fold_events(self, events: Sequence[dict[str, Any]], revision: int) -> None:
        for event in events:
            kv = event["kv"]
            key = unb64(kv["key"]).decode("utf-8", "replace")
            if event.get("type") == "DELETE":
                self._entries.pop(key, None)
            else:
                mod = int(kv.get("mod_revision", 0))
                known = self._entries.get(key)
                self._entries[key] = self._entry(key, unb64(kv.get("value", "")), mod, known)
        self._seen = max(self._seen, revision)
        self._changed(True, revision)

    def progress(self, revision: int) -> None:
        self._seen = max(self._seen, revision)

    def connection(self, problem: str | None) -> None:
        if problem == self._problem:
            return
        self._problem = problem
        self._diagnostics_changed()

    def _entry(self, key: str, value: bytes, mod: int, known: _Entry | None) -> _Entry:
        resource, diagnostics = decode(key, self.layout.parse(key), value, self._load_text)
        if resource is None:
            return _Entry(mod, known.resource if known is not None else None, diagnostics)
        return _Entry(mod, resource, diagnostics)

    def _changed(self, changed: bool, revision: int) -> None:
        self._ordered = None
        if changed:
            self._advance(revision)

    # -- writing -------------------------------------------------------------------

    def apply(self, resource: Resource) -> int:
        return self.apply_all([resource])

    def apply_all(self, resources: Sequence[Resource]) -> int:
        """Write every changed object in one transaction; see the module docstring.

        StoreError listing every problem (nothing written) when any object is
        refused; StoreError when etcd cannot be reached or refuses the write.
        """
        check_batch_keys(resources)
        puts: builtins.list[tuple[str, bytes, Resource]] = []
        problems: builtins.list[Diagnostic] = []
        refused: builtins.list[StoreError] = []
        for resource in resources:
            if self._holds(resource):
                continue
            try:
                puts.append(self._encoded(resource))
            except StoreError as exc:
                refused.append(exc)
                problems.extend(exc.diagnostics)
        if refused:
            first = refused[0]
            more = f" (and {len(refused) - 1} more object(s) refused)" if len(refused) > 1 else ""
            raise StoreError(f"{first}{more}; nothing was written", problems, first.key)
        if not puts:
            return self._revision
        ops = [{"request_put": {"key": b64(key), "value": b64(value)}} for key, value, _ in puts]
        reply = self._transact(ops)
        revision = int(reply["header"]["revision"])

        def fold() -> None:
            for key, _, resource in puts:
                self._entries[key] = _Entry(revision, resource)

        self._after_write(reply, revision, fold)
        return self._revision

    def delete(self, key: ResourceKey, expected: Resource | None = None) -> int:
        """Remove ``key``; KeyError if etcd does not hold it. With ``expected``
        (``Store.delete``) the transaction compares the key's mod revision with
        the one the mirror read it at, so a write by another replica that the
        watch has not brought in yet is not deleted either: StoreConflict."""
        try:
            etcd_key = self.layout.key(key)
        except KeyError:
            raise KeyError(key) from None
        compare: builtins.list[dict[str, Any]] = []
        if expected is not None:
            entry = self._entries.get(etcd_key)
            check_expected(key, entry.resource if entry is not None else None, expected)
            assert entry is not None
            read_at = str(entry.mod_revision)
            compare.append(
                {"key": b64(etcd_key), "target": "MOD", "result": "EQUAL", "mod_revision": read_at}
            )
        reply = self._transact([{"request_delete_range": {"key": b64(etcd_key)}}], compare)
        if compare and not reply.get("succeeded", False):  # JSON leaves a false field out
            raise StoreConflict(f"{key} was changed by another writer; not removed", key=key)
        deleted = int(reply["responses"][2].get("response_delete_range", {}).get("deleted", 0))
        if not deleted:
            raise KeyError(key)
        revision = int(reply["header"]["revision"])
        self._after_write(reply, revision, lambda: self._entries.pop(etcd_key, None))
        return self._revision

    def _holds(self, resource: Resource) -> bool:
        current = self.get(resource.key)
        return current is not None and same_content(current, resource)

    def _encoded(self, resource: Resource) -> tuple[str, bytes, Resource]:
        try:
            etcd_key = self.layout.key(resource.key)
        except KeyError:
            raise StoreError(f"{resource.key}: kind {resource.kind} cannot be stored") from None
        if self._validator is not None:
            found = builtins.list(self._validator(resource))
            errors = [d for d in found if d.is_error]
            if errors:
                raise StoreError(
                    f"{resource.key} refused: {errors[0].format()}", errors, resource.key
                )
        return etcd_key, encode(resource, etcd_key, self._load_text), resource

    def _transact(
        self, ops: builtins.list[dict[str, Any]], compare: Sequence[dict[str, Any]] = ()
    ) -> dict[str, Any]:
        """One transaction: two reads telling whether the mirror is current, then
        ``ops``; only if every ``compare`` holds (else nothing: ``succeeded`` false)."""
        whole = {"key": b64(self.layout.range_start), "range_end": b64(self.layout.range_end)}
        since = {**whole, "keys_only": True, "min_mod_revision": str(self._seen + 1)}
        body: dict[str, Any] = {
            "success": [
                {"request_range": since},
                {"request_range": {**whole, "count_only": True}},
                *ops,
            ]
        }
        if compare:
            body["compare"] = builtins.list(compare)
        try:
            return self.client.call("/v3/kv/txn", body)
        except EtcdUnavailable as exc:
            if exc.maybe_done:
                # As the Kubernetes API server says of a timeout: the outcome is unknown.
                raise StoreError(
                    f"etcd at {self.client.endpoints} did not answer in time ({exc}): the "
                    "change may still be applied when etcd answers; `pilotfish get` shows "
                    "what is stored"
                ) from exc
            raise StoreError(f"cannot write to etcd at {self.client.endpoints}: {exc}") from exc
        except EtcdError as exc:
            raise StoreError(f"cannot write to etcd at {self.client.endpoints}: {exc}") from exc

    def _after_write(self, reply: dict[str, Any], revision: int, fold: Any) -> None:
        """Fold a write at ``revision`` into the mirror (see the module docstring)."""
        responses = reply.get("responses", [])
        newer = responses[0].get("response_range", {}).get("kvs", [])
        count = int(responses[1].get("response_range", {}).get("count", 0))
        if not newer and count == len(self._entries):
            fold()
            self._seen = revision
            self._changed(True, revision)
            return
        # Another writer changed the range since ``seen``: take etcd's state as of
        # this write, which includes both.
        try:
            listing = self.client.call(
                "/v3/kv/range",
                {
                    "key": b64(self.layout.range_start),
                    "range_end": b64(self.layout.range_end),
                    "revision": str(revision),
                },
            )
        except EtcdError as exc:
            _log.warning("etcd: re-reading after a write failed (%s); the watch catches up", exc)
            return
        self.fold_listing(listing.get("kvs", []), revision)
