"""What a file store serves: the objects of every file, folded in and merged.

Theory of operation
-------------------
``FileView`` holds what the store knows of each file (``FileState``: its scan
memo, the objects of its last clean load, the diagnostics of its latest load)
and the effective set merged from them. Scans (``_reading``, in a worker
thread) and the store's own writes are folded in here, on the event loop's
thread; how files are watched (``_file_watch``) and written (``files``) is
the business of the classes built on this one.

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
The revision is bumped once per fold, and only if the effective set changed
in apiVersion, kind, metadata or spec: a comment edit re-reads the file,
refreshes line numbers, and bumps nothing.

A scan that was reading in its thread while the store wrote a file ignores
what it saw of the written path: the write is newer (``_written``).
"""

from __future__ import annotations

import builtins  # the class defines a method named ``list``
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.loader import LoadResult
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store import _scan
from pilotfish.store._common import same_content, select, sorted_by_key
from pilotfish.store._merge import Contribution, Merged, merge, same_set, update
from pilotfish.store._reading import PollResult, TextLoader
from pilotfish.store.base import Store

__all__ = ["FileView"]

_Order = tuple[int, tuple[str, ...]]
_Good = tuple[Resource, ...] | None
#: path -> the objects the file contributed before a change (None: nothing).
Changes = dict[str, _Good]
#: path -> (before, after) of a change.
_Delta = dict[str, tuple[_Good, _Good]]


@dataclass(slots=True)
class FileState:
    """What the store knows about one file."""

    order: _Order
    memo: _scan.Memo
    good: tuple[Resource, ...] | None = None  # objects of the last clean load
    diagnostics: tuple[Diagnostic, ...] = ()  # of the latest load, good or not
    ok: bool = True  # whether the latest load was clean


class FileView(Store):
    """The files' objects and problems, and how scans and writes fold into them.

    ``roots``: the configured paths in precedence order; ``load_text`` parses a
    file's text; files larger than ``max_bytes`` are never read.
    """

    def __init__(self, roots: tuple[Path, ...], load_text: TextLoader, max_bytes: int) -> None:
        super().__init__()
        self._roots = roots
        self._load_text = load_text
        self._max_bytes = max_bytes
        self._files: dict[str, FileState] = {}
        self._root_problems: tuple[Diagnostic, ...] = ()
        self._merged = Merged({}, {}, (), {})
        self._ordered: tuple[Resource, ...] = ()
        self._positions: dict[ResourceKey, int] = {}  # key -> its index in _ordered
        # Sequence number of the latest apply/delete of each path, and a counter
        # of folded scans: both let a poll drop what a newer event superseded.
        # (One entry per path ever written: bounded by the files of the tree.)
        self._writes = 0
        self._written: dict[str, int] = {}
        self._scans = 0

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

    # -- folding ---------------------------------------------------------------

    def _known(self) -> dict[str, _scan.Memo]:
        return {path: state.memo for path, state in self._files.items()}

    def _fold(self, result: PollResult, writes: int) -> bool:
        """Bring the view up to date with one scan that began after write number
        ``writes``; bump once if the objects changed."""
        obs = result.observation
        self._scans += 1
        if obs.root_problems is not None:
            self._root_problems = obs.root_problems
            self._directories_seen(obs.directories, obs.links)
        # Paths apply/delete touched during the scan already hold newer state.
        stale = {path for path, seq in self._written.items() if seq > writes}
        changes: Changes = {}
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
                state = self._files[path] = FileState(order, reading.memo)
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
    def _record_load(state: FileState, loaded: LoadResult) -> None:
        state.diagnostics = loaded.diagnostics
        state.ok = not any(d.is_error for d in loaded.diagnostics)
        if state.ok:
            state.good = loaded.resources

    def _remerge(self, changes: Changes | None = None) -> bool:
        """Recompute the effective set; bump if it changed. True if bumped.

        ``changes`` (path -> the file's contribution before) lets a change that
        keeps every file's set of objects replace them in place (``_merge.update``)
        instead of merging and sorting every file again."""
        if changes is not None:
            delta = {p: (before, self._reuse_unchanged(p, before)) for p, before in changes.items()}
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

    def _reuse_unchanged(
        self, path: str, before: tuple[Resource, ...] | None
    ) -> tuple[Resource, ...] | None:
        """The file's objects, with each that reads exactly as before (content,
        source, lines and spelling) replaced by the previous object, which is
        then also what the file contributes. A file of several documents is
        re-read whole when one of them changes; kept identity lets every
        consumer that compares objects (converters' caches, the snapshot's
        incremental paths) pass the others by an identity check."""
        state = self._files.get(path)
        after = state.good if state is not None else None
        if state is None or not before or not after or after is before:
            return after
        previous = {r.key: r for r in before}
        kept = tuple(_same_reading(previous.get(r.key), r) for r in after)
        state.good = kept
        return kept

    def _take_update(self, merged: Merged, delta: _Delta) -> bool:
        """Adopt an in-place update: the same keys, so ``list()``'s order stands."""
        old = self._merged.objects
        ordered = builtins.list(self._ordered)
        changed = False
        for _, after in delta.values():
            for resource in after or ():
                key = resource.key
                was = old[key]
                changed = changed or (was is not resource and not same_content(was, resource))
                ordered[self._positions[key]] = resource
        self._merged = merged
        self._ordered = tuple(ordered)
        if changed:
            self._bump()
        return changed

    def _good_of(self, path: str) -> tuple[Resource, ...] | None:
        state = self._files.get(path)
        return state.good if state is not None else None

    def _in_order(self) -> builtins.list[tuple[str, FileState]]:
        return sorted(self._files.items(), key=lambda item: item[1].order)

    def _file_diagnostics(self) -> builtins.list[Diagnostic]:
        return [d for state in self._files.values() for d in state.diagnostics]

    def _directories_seen(self, directories: tuple[str, ...], links: bool) -> None:
        """A full scan walked ``directories``, and found a file reached through a
        symbolic link if ``links`` (a watcher re-syncs its watches)."""


def _same_reading(previous: Resource | None, resource: Resource) -> Resource:
    """``previous`` if ``resource`` reads exactly as it did, else ``resource``."""
    if (
        previous is not None
        and previous.source == resource.source
        and previous.lines == resource.lines
        and previous.raw == resource.raw
        and same_content(previous, resource)
    ):
        return previous
    return resource
