"""A store backed by YAML/JSON files in watched directories.

Theory of operation
-------------------
The store serves the objects found in every ``*.yaml``, ``*.yml`` and
``*.json`` file under its configured paths (directories are walked
recursively; hidden files and editor leftovers are skipped). It is built in
three layers, one module each:

* ``_file_view.FileView``: what the files serve. Per file, the objects of its
  last clean load (a file with errors keeps serving those) and its
  diagnostics; the effective set merged from every file in precedence order;
  the revision, bumped only when that set changed.
* ``_file_watch.WatchedFiles``: how the view follows the disk. Polls (``stat``
  every file, re-read what changed, in a worker thread) and, with one
  directory tree on Linux, writes heard through inotify and read at once.
* ``FileStore`` (here): the write path, and the public constructor.

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

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pilotfish.api import loader
from pilotfish.api.limits import DEFAULT_LIMITS, ParseLimits
from pilotfish.api.loader import LoadResult
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store import _batch, _scan
from pilotfish.store._common import (
    Validator,
    check_batch_keys,
    check_expected,
    check_write,
    same_content,
)
from pilotfish.store._file_view import Changes, FileState
from pilotfish.store._file_watch import WatchedFiles
from pilotfish.store._reading import TextLoader
from pilotfish.store._render import remove_file, render
from pilotfish.store.base import StoreError

__all__ = ["FileStore", "TextLoader"]


class FileStore(WatchedFiles):
    """``Store`` over files and directories; see the module docstring.

    ``paths``: directories and/or single files, in precedence order. The first
    directory is where ``apply`` writes new objects (created if missing).
    ``validator`` (optional) may refuse ``apply`` calls; ``load_text`` parses a
    file's text (the standard loader within ``limits`` unless a test injects
    another); files larger than ``limits.max_file_bytes`` are never read.
    ``poll_interval``: seconds between polls; ``inotify``: also hear writes
    (one directory tree on Linux only); ``covered_poll_interval``: seconds
    between polls while inotify covers the whole tree (they are then only a
    backstop, see ``_file_watch``).
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
        covered_poll_interval: float = 2.0,
    ) -> None:
        if isinstance(paths, str | Path):
            paths = [paths]
        if not paths:
            raise ValueError("FileStore needs at least one path")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        super().__init__(
            tuple(Path(p) for p in paths),
            load_text or functools.partial(loader.load_text, limits=limits),
            limits.max_file_bytes,
            poll_interval=poll_interval,
            logger=logger or logging.getLogger("pilotfish.store.files"),
            inotify=inotify,
            covered_poll_interval=covered_poll_interval,
        )
        self._validator = validator

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
        changes: Changes = {plan.target: self._good_of(plan.target) for plan in plans}
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
            state = self._files[plan.target] = FileState(order, memo)
        state.memo = memo
        self._record_load(state, plan.loaded)
        self._note_write(plan.target)

    def delete(self, key: ResourceKey, expected: Resource | None = None) -> int:
        """Remove ``key`` by removing the file that holds it; returns the revision.

        ``KeyError`` if no file serves it. ``StoreConflict`` if it is not
        ``expected`` (``Store.delete``). ``StoreError`` (nothing removed) if
        that file also defines other objects or currently has errors (user
        files are never rewritten), or if other files define the same object
        too (it would come back from them).
        """
        path = self._merged.owners.get(key)
        if path is None:
            raise KeyError(key)
        check_expected(key, self.get(key), expected)
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
