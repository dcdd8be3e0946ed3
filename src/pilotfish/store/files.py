"""A store backed by YAML/JSON files in watched directories.

Theory of operation
-------------------
The store serves the objects found in every ``*.yaml``, ``*.yml`` and
``*.json`` file under its configured paths (directories are walked
recursively; hidden files and editor leftovers are skipped). ``start()`` loads
everything once, then an asyncio task polls every ``poll_interval`` seconds.
With one configured directory tree on Linux, writes are also heard as they
happen (``_inotify``): a file written, renamed into place or removed is read
at once, alone, without waiting for the next poll or scanning the tree (at
most once per ``_HEARD_GAP``, 100 ms, so a burst is read in batches). The polls stay,
for what inotify does not see (network file systems, links out of the tree,
a system out of watches); each full poll also re-syncs the watched
directories with the tree it walked. A poll ``stat``s every file and
re-reads only those whose (mtime_ns, size, inode) changed (see ``_scan``),
and parses only those whose bytes changed.
Scanning, reading and parsing run in a worker thread so a large tree never
stalls the event loop; the result is folded into the store's state back on
the loop. The watcher rests longer between polls if scanning gets slow, so a
huge tree cannot take over the machine. The rest follows the CPU time of the
scan (listing and ``stat``-ing the tree), not the wall time of the whole poll:
reading and parsing the files that changed is the work the changes ask for,
and a busy event loop or a thread waiting for the GIL is not the store's cost.
Resting in proportion to that too made a tree that changes steadily fall
further behind with every poll (more changed files per poll, a longer poll,
a longer rest, more changed files).

Per-file last good: each file remembers the objects of its last load without
error diagnostics. A load with errors records those diagnostics but keeps
serving the remembered objects, so a typo never tears down live routes; a
file that has never loaded cleanly contributes nothing. Deleting a file
removes its objects. A file beyond the ``ParseLimits`` (too large: not even
read; an alias bomb, nesting too deep, too many nodes or documents: refused
while parsing) is such an error too.

The effective set is the merge of all files in precedence order (``_merge``).
A change that keeps each changed file's set of objects (the common edit)
replaces them in the previous merge instead (``_merge.update``): at a
thousand files, merging, comparing and sorting everything again was most of
what folding one changed file cost.
The revision is bumped once per poll, and only if the effective set changed
in apiVersion, kind, metadata or spec: a comment edit re-reads the file,
refreshes line numbers, and bumps nothing.

Writes (``apply`` / ``apply_all`` / ``delete``, used by the HTTP API) go to
disk first, each file as a whole-file atomic replace, and are then folded into
the in-memory view at once, without waiting for a poll. ``apply_all`` is as
atomic as separate files allow (``_batch``): everything is checked and
rendered before the first file is replaced, a failed write restores the
files already replaced, and the view changes once; only a crash of the
process between two replacements leaves a prefix of the batch on disk (each
file whole), which the next load serves. A poll that was reading in its thread
while a write happened ignores what it saw of the written path: the write is
newer. All methods must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import builtins  # the class defines a method named ``list``
import contextlib
import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotfish.api import loader
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.limits import DEFAULT_LIMITS, ParseLimits
from pilotfish.api.loader import LoadResult
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store import _batch, _scan
from pilotfish.store._common import (
    Validator,
    check_batch_keys,
    check_write,
    same_content,
    select,
    sorted_by_key,
)
from pilotfish.store._inotify import DirWatch, Events
from pilotfish.store._merge import Contribution, Merged, merge, same_set, update
from pilotfish.store._reading import PollResult, TextLoader, poll_tree, read_paths, rest_after
from pilotfish.store._render import remove_file, render
from pilotfish.store.base import Store, StoreError

__all__ = ["FileStore", "TextLoader"]

_Order = tuple[int, tuple[str, ...]]
_Good = tuple[Resource, ...] | None
#: path -> the objects the file contributed before a change (None: nothing).
_Changes = dict[str, _Good]
#: path -> (before, after) of a change.
_Delta = dict[str, tuple[_Good, _Good]]

#: Heard writes are read at most this often (seconds between two reads): an
#: isolated write is read at once, a burst no more often than the default poll
#: would read it. Every read that changes something costs a snapshot downstream;
#: at 100 writes/s, reading every 20 ms built 227 snapshots a minute instead of ~90,
#: and the control plane, already at one core, fell further behind.
_HEARD_GAP = 0.1


@dataclass(slots=True)
class _FileState:
    """What the store knows about one file."""

    order: _Order
    memo: _scan.Memo
    good: tuple[Resource, ...] | None = None  # objects of the last clean load
    diagnostics: tuple[Diagnostic, ...] = ()  # of the latest load, good or not
    ok: bool = True  # whether the latest load was clean


class FileStore(Store):
    """``Store`` over files and directories; see the module docstring.

    ``paths``: directories and/or single files, in precedence order. The first
    directory is where ``apply`` writes new objects (created if missing).
    ``validator`` (optional) may refuse ``apply`` calls; ``load_text`` parses a
    file's text (the standard loader within ``limits`` unless a test injects
    another); files larger than ``limits.max_file_bytes`` are never read.
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        poll_interval: float = 0.1,
        validator: Validator | None = None,
        load_text: TextLoader | None = None,
        limits: ParseLimits = DEFAULT_LIMITS,
        logger: logging.Logger | None = None,
        inotify: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(paths, str | Path):
            paths = [paths]
        if not paths:
            raise ValueError("FileStore needs at least one path")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self._roots: tuple[Path, ...] = tuple(Path(p) for p in paths)
        self._poll_interval = poll_interval
        self._validator = validator
        self._load_text = load_text or functools.partial(loader.load_text, limits=limits)
        self._max_bytes = limits.max_file_bytes
        self._log = logger or logging.getLogger("pilotfish.store.files")
        self._files: dict[str, _FileState] = {}
        self._root_problems: tuple[Diagnostic, ...] = ()
        self._merged = Merged({}, {}, (), {})
        self._ordered: tuple[Resource, ...] = ()
        self._positions: dict[ResourceKey, int] = {}  # key -> its index in _ordered
        self._task: asyncio.Task[None] | None = None
        # Sequence number of the latest apply/delete of each path, and a counter
        # of folded scans: both let a poll drop what a newer event superseded.
        # (One entry per path ever written: bounded by the files of the tree.)
        self._writes = 0
        self._written: dict[str, int] = {}
        self._scans = 0
        self._last_scan_cpu_s = 0.0
        # Writes heard through inotify (None: not started, not Linux, or several
        # roots) and not read yet; ``_wake`` is set when there are some.
        self._use_inotify = inotify
        self._notify: DirWatch | None = None
        self._heard = Events()
        self._wake = asyncio.Event()

    # -- reading ---------------------------------------------------------------

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._roots

    @property
    def scans(self) -> int:
        """How many scans (polls or rescans) have been folded into the view so far."""
        return self._scans

    def get(self, key: ResourceKey) -> Resource | None:
        return self._merged.objects.get(key)

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        """Matching resources sorted by kind, namespace, name."""
        return select(self._ordered, kind, namespace)

    def origin(self, key: ResourceKey) -> str | None:
        """The file that serves ``key``, or None if no file does."""
        return self._merged.owners.get(key)

    def diagnostics(self) -> builtins.list[Diagnostic]:
        """Problems with the configured paths and files (errors and warnings), in
        file precedence order, then line order within a file."""
        ranked: list[tuple[_Order, int, Diagnostic]] = []
        for diag in self._root_problems:
            root = diag.source.file if diag.source else ""
            index = next((i for i, r in enumerate(self._roots) if str(r) == root), 0)
            ranked.append(((index, ()), 0, diag))
        for diag in (*self._file_diagnostics(), *self._merged.duplicates):
            file = diag.source.file if diag.source else ""
            state = self._files.get(file)
            order = state.order if state is not None else (len(self._roots), (file,))
            ranked.append((order, diag.source.line if diag.source else 0, diag))
        ranked.sort(key=lambda item: (item[0], item[1]))
        return [diag for _, _, diag in ranked]

    def files_status(self) -> builtins.list[dict[str, Any]]:
        """One entry per file, in precedence order, for ``/debug/configz``.

        ``state`` is ``ok``, ``error`` (the latest load failed; ``serving`` says
        whether the objects of an earlier good load are still served) or
        ``never-loaded`` (failed every time so far, contributes nothing).
        """
        status: list[dict[str, Any]] = []
        for path, state in self._in_order():
            label = "ok" if state.ok else "error" if state.good is not None else "never-loaded"
            ignored = self._merged.ignored.get(path, ())
            status.append(
                {
                    "file": path,
                    "state": label,
                    "ok": state.ok,
                    "serving": state.good is not None,
                    "resources": [str(r.key) for r in state.good or ()],
                    "ignoredDuplicates": [str(k) for k in ignored],
                    "diagnostics": [d.to_json() for d in state.diagnostics],
                }
            )
        return status

    # -- watching --------------------------------------------------------------

    async def start(self) -> None:
        """Load every file once, then keep watching (inotify and polls) until ``close()``."""
        if self._task is not None:
            return
        # One directory tree: writes are heard at once. Several roots can reach one
        # file twice (deduplicated by a full scan only), so they are polled alone.
        if self._use_inotify and len(self._roots) == 1:
            self._notify = DirWatch.open()
        await self.poll()
        if self._notify is not None:
            asyncio.get_running_loop().add_reader(self._notify.fileno(), self._on_events)
        self._task = asyncio.create_task(self._watch(), name="pilotfish-filestore-poll")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        notify, self._notify = self._notify, None
        if notify is not None:
            asyncio.get_running_loop().remove_reader(notify.fileno())
            notify.close()

    @property
    def watched_directories(self) -> frozenset[str]:
        """The directories whose writes are heard at once (empty: polling only)."""
        return self._notify.directories if self._notify is not None else frozenset()

    async def poll(self) -> bool:
        """Scan once, reading files in a worker thread. True if the revision was bumped."""
        scans, writes, known = self._scans, self._writes, self._known()
        result = await asyncio.to_thread(
            poll_tree, self._roots, known, self._load_text, self._max_bytes
        )
        self._last_scan_cpu_s = result.scan_cpu_s
        if self._scans != scans:
            return False  # another scan finished meanwhile and saw newer files
        return self._fold(result, writes)

    async def _read_heard(self, paths: set[str]) -> bool:
        """Read only ``paths`` (their writes were heard); True if the revision was bumped."""
        scans, writes, known = self._scans, self._writes, self._known()
        result = await asyncio.to_thread(read_paths, paths, known, self._load_text, self._max_bytes)
        if self._scans != scans:  # a scan finished meanwhile: read them again after it
            self._heard.paths |= paths
            self._wake.set()
            return False
        return self._fold(result, writes)

    def rescan(self) -> bool:
        """Scan once, blocking (for command-line use). True if the revision was bumped."""
        result = poll_tree(self._roots, self._known(), self._load_text, self._max_bytes)
        return self._fold(result, self._writes)

    def _on_events(self) -> None:
        if self._notify is not None:
            self._notify.read(self._heard)
        if self._heard:
            self._wake.set()

    async def _watch(self) -> None:
        """Polls every ``poll_interval`` (or the rest), and reads heard writes between them.

        A write heard while the store was idle is read at once; one heard within
        ``_HEARD_GAP`` of the previous read (or poll that found changes) waits out
        the gap, so a burst of writes is read in a few batches rather than one
        file at a time."""
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + self._poll_interval
        last_read = -_HEARD_GAP
        while True:
            now = loop.time()
            wake_at = next_poll if not self._heard else min(next_poll, last_read + _HEARD_GAP)
            if wake_at > now:
                self._wake.clear()
                if self._heard:  # heard already: only the gap to wait out
                    await asyncio.sleep(wake_at - now)
                else:
                    # Not wait_for: on Python 3.11 it can swallow a cancellation (close())
                    # that races with the event being set, and this loop would run on.
                    waiter = asyncio.ensure_future(self._wake.wait())
                    try:
                        await asyncio.wait({waiter}, timeout=wake_at - now)
                    finally:
                        waiter.cancel()
                    continue  # woken (or timed out): work out what is due
            heard, self._heard = self._heard, Events()
            try:
                if heard.rescan or loop.time() >= next_poll:
                    started = loop.time()
                    if await self.poll():  # covers what was heard too
                        # A poll that found changes is a read too: within a burst,
                        # polls and heard reads together fold about once per gap.
                        last_read = started
                    next_poll = loop.time() + rest_after(self._poll_interval, self._last_scan_cpu_s)
                else:
                    last_read = loop.time()
                    await self._read_heard(heard.paths)
            except Exception:  # keep watching: the next poll may well succeed
                self._log.exception("reading configuration files failed")
                next_poll = loop.time() + self._poll_interval

    def _known(self) -> dict[str, _scan.Memo]:
        return {path: state.memo for path, state in self._files.items()}

    def _fold(self, result: PollResult, writes: int) -> bool:
        """Bring the view up to date with one scan that began after write number
        ``writes``; bump once if the objects changed."""
        obs = result.observation
        self._scans += 1
        if obs.root_problems is not None:
            self._root_problems = obs.root_problems
            if self._notify is not None:
                self._notify.sync(obs.directories)
        # Paths apply/delete touched during the scan already hold newer state.
        stale = {path for path, seq in self._written.items() if seq > writes}
        changes: _Changes = {}
        for path in obs.gone - stale:
            gone = self._files.pop(path, None)
            if gone is not None:
                changes[path] = gone.good
        for reading in obs.readings:
            path = reading.found.path
            if path in stale:
                continue
            state = self._files.get(path)
            if state is None:
                order = _scan.order_of(self._roots, path)
                state = self._files[path] = _FileState(order, reading.memo)
            state.memo = reading.memo
            if not reading.parse:
                continue
            changes[path] = state.good
            if reading.problem is not None:
                state.ok, state.diagnostics = False, (reading.problem,)
            else:
                self._record_load(state, result.loads[path])
        # Re-merging is the costly part with thousands of objects: only when needed.
        if not changes:
            return False
        bumped = self._remerge(changes)
        if not bumped:
            self._diagnostics_changed()  # e.g. a file broken again: same objects, new error
        return bumped

    @staticmethod
    def _record_load(state: _FileState, loaded: LoadResult) -> None:
        state.diagnostics = loaded.diagnostics
        state.ok = not any(d.is_error for d in loaded.diagnostics)
        if state.ok:
            state.good = loaded.resources

    def _remerge(self, changes: _Changes | None = None) -> bool:
        """Recompute the effective set; bump if it changed. True if bumped.

        ``changes`` (path -> the file's contribution before) lets a change that
        keeps every file's set of objects replace them in place (``_merge.update``)
        instead of merging and sorting every file again."""
        if changes is not None:
            delta = {path: (before, self._good_of(path)) for path, before in changes.items()}
            merged = update(self._merged, delta)
            if merged is not None:
                return self._take_update(merged, delta)
        merged = merge(
            Contribution(path, state.good) for path, state in self._in_order() if state.good
        )
        changed = not same_set(self._merged.objects, merged.objects)
        # Always take the new merge: sources and line numbers may have moved
        # even when the configuration they describe did not.
        self._merged = merged
        self._ordered = sorted_by_key(merged.objects.values())
        self._positions = {r.key: i for i, r in enumerate(self._ordered)}
        if changed:
            self._bump()
        return changed

    def _take_update(self, merged: Merged, delta: _Delta) -> bool:
        """Adopt an in-place update: the same keys, so ``list()``'s order stands."""
        old = self._merged.objects
        ordered = builtins.list(self._ordered)
        changed = False
        for _, after in delta.values():
            for resource in after or ():
                key = resource.key
                changed = changed or not same_content(old[key], resource)
                ordered[self._positions[key]] = resource
        self._merged = merged
        self._ordered = tuple(ordered)
        if changed:
            self._bump()
        return changed

    def _good_of(self, path: str) -> tuple[Resource, ...] | None:
        state = self._files.get(path)
        return state.good if state is not None else None

    def _in_order(self) -> builtins.list[tuple[str, _FileState]]:
        return sorted(self._files.items(), key=lambda item: item[1].order)

    def _file_diagnostics(self) -> builtins.list[Diagnostic]:
        return [d for state in self._files.values() for d in state.diagnostics]

    # -- writing ---------------------------------------------------------------

    @property
    def write_dir(self) -> Path | None:
        """Where new objects are written: the first configured path that is a
        directory, or that does not exist yet and does not look like a file name."""
        for root in self._roots:
            if root.is_dir():
                return root
            if not root.exists() and not root.name.endswith(_scan.CONFIG_SUFFIXES):
                return root
        return None

    def apply(self, resource: Resource) -> int:
        """Create or replace ``resource`` on disk, then in the view; returns the revision.

        An object already served from a file is rewritten in that file if it is
        the file's only object; otherwise it goes to
        ``<write_dir>/<namespace>/<kind-lowercase>-<name>.yaml``. Refused with
        ``StoreError`` (and nothing written) when the object lives in a file
        with other objects or with errors, when the validator refuses it, or
        when there is no directory to write to. Applying an object identical
        to the served one changes nothing.
        """
        return self.apply_all([resource])

    def apply_all(self, resources: Sequence[Resource]) -> int:
        """``apply`` for several objects as one change; see the module docstring.

        Every object is checked, placed and rendered before any file is
        touched, so a refusal (any reason ``apply`` has) writes nothing. The
        files are then replaced one by one, each atomically; if one cannot be
        written, those already replaced get their old bytes back (new ones are
        removed) before ``StoreError`` is raised. The view takes all of them
        at once, with one revision bump.
        """
        check_batch_keys(resources)
        plans = [self._plan(r) for r in resources if not self._serves(r)]
        if not plans:
            return self._revision
        targets = [plan.target for plan in plans]
        if len(set(targets)) != len(targets):
            raise StoreError("two objects of one write would go to the same file")
        try:
            written = _batch.write_all(plans)
        except StoreError:
            # The files were rewritten and restored: a poll that read them
            # meanwhile may have seen the batch's bytes, and must not serve them.
            for plan in plans:
                self._note_write(plan.target)
            raise
        changes: _Changes = {plan.target: self._good_of(plan.target) for plan in plans}
        for plan, st in zip(plans, written, strict=True):
            self._fold_write(plan, st)
        # The writes may have created a configured directory that was missing.
        self._root_problems = tuple(
            d for d in self._root_problems if d.source is None or not os.path.exists(d.source.file)
        )
        self._remerge(changes)
        return self._revision

    def _serves(self, resource: Resource) -> bool:
        current = self._merged.objects.get(resource.key)
        return current is not None and same_content(current, resource)

    def _plan(self, resource: Resource) -> _batch.Plan:
        """Where and what ``apply`` writes for ``resource``; StoreError (naming
        its key) if refused."""
        try:
            check_write(self._validator, resource)
            target = self._target_for(resource.key)
            data, loaded = self._encode(resource, target)
        except StoreError as exc:
            exc.key = exc.key or resource.key
            raise
        return _batch.Plan(target, data, loaded, private=resource.kind == "Secret")

    def _fold_write(self, plan: _batch.Plan, st: os.stat_result) -> None:
        """Record a written file in the view as if a poll had read it."""
        # racy=True: the next polls re-read the file (cheaply: the bytes compare
        # equal) so that someone else's edit within the same mtime tick is not missed.
        memo = _scan.Memo(_scan.Fingerprint.of(st), _scan.digest(plan.data), racy=True)
        state = self._files.get(plan.target)
        if state is None:
            order = _scan.order_of(self._roots, plan.target)
            state = self._files[plan.target] = _FileState(order, memo)
        state.memo = memo
        self._record_load(state, plan.loaded)
        self._note_write(plan.target)

    def delete(self, key: ResourceKey) -> int:
        """Remove ``key`` by removing the file that holds it; returns the revision.

        ``KeyError`` if no file serves it. ``StoreError`` (nothing removed) if
        that file also defines other objects or currently has errors (user
        files are never rewritten), or if other files define the same object
        too (it would come back from them).
        """
        path = self._merged.owners.get(key)
        if path is None:
            raise KeyError(key)
        state = self._files[path]
        if not state.ok:
            raise StoreError(
                f"{key} is defined in {path}, which currently has errors; "
                "fix or remove that file instead",
                state.diagnostics,
            )
        others = [r for r in state.good or () if r.key != key]
        if others:
            raise StoreError(
                f"{key} is defined in {path} together with {len(others)} other "
                f"object(s); remove it from that file instead"
            )
        shadowed = [
            d for d in self._merged.duplicates if ResourceKey(d.kind, d.namespace, d.name) == key
        ]
        if shadowed:
            where = ", ".join(str(d.source) for d in shadowed if d.source)
            raise StoreError(f"{key} is also defined in {where}; remove those definitions first")
        try:
            remove_file(path)
        except FileNotFoundError:
            pass  # already gone: the view just had not seen it yet
        except OSError as exc:
            raise StoreError(f"cannot remove {path}: {exc.strerror or exc}") from exc
        del self._files[path]
        self._note_write(path)
        self._remerge()
        return self._revision

    def _note_write(self, path: str) -> None:
        self._writes += 1
        self._written[path] = self._writes

    def _target_for(self, key: ResourceKey) -> str:
        """The file ``apply`` writes ``key`` to, or StoreError if none may be written."""
        owner = self._merged.owners.get(key)
        if owner is not None:
            self._check_rewritable(owner, key)
            return owner
        directory = self.write_dir
        if directory is None:
            raise StoreError(f"cannot write {key}: no configured directory to write to")
        for part in (key.namespace, key.name, key.kind):
            if not _safe_component(part):
                raise StoreError(f"cannot write {key}: {part!r} is not usable in a file name")
        target = str(directory / key.namespace / f"{key.kind.lower()}-{key.name}.yaml")
        if target in self._files:
            self._check_rewritable(target, key)
        return target

    def _check_rewritable(self, path: str, key: ResourceKey) -> None:
        state = self._files[path]
        if not state.ok:
            raise StoreError(
                f"cannot write {key}: {path} currently has errors; fix or remove it first",
                state.diagnostics,
            )
        others = [r for r in state.good or () if r.key != key]
        if others:
            raise StoreError(
                f"cannot write {key}: {path} also defines {len(others)} other object(s); "
                "edit that file instead"
            )

    def _encode(self, resource: Resource, target: str) -> tuple[bytes, LoadResult]:
        """Render ``resource`` for ``target`` and prove it loads back to the same object.

        The user's own document (``raw``) is preferred; if it no longer matches
        the typed object (a caller changed one and not the other), the typed
        object is rendered instead.
        """
        as_json = target.endswith(".json")
        candidates = [resource]
        if resource.raw:
            candidates.append(
                Resource(resource.api_version, resource.kind, resource.metadata, resource.spec)
            )
        loaded = LoadResult()
        for candidate in candidates:
            text = render(candidate, as_json=as_json)
            loaded = self._load_text(text, target)
            back = loaded.resources
            if loaded.ok and len(back) == 1 and same_content(back[0], resource):
                return text.encode("utf-8"), loaded
        errors = [d for d in loaded.diagnostics if d.is_error]
        raise StoreError(f"{resource.key} does not survive writing to {target}", errors)


def _safe_component(part: str) -> bool:
    """Usable as one path component that the watcher will read back (not hidden)."""
    return (
        bool(part)
        and not part.startswith(".")
        and "/" not in part
        and "\\" not in part
        and "\0" not in part
    )
