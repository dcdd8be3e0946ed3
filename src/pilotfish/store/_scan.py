"""Finding configuration files and noticing which of them changed.

Theory of operation: a poll lists every configuration file under the
configured roots and ``stat``s it; that is all it costs while nothing changes
(one ``scandir`` per directory and one ``stat`` per file). A file is read again
only when its fingerprint (mtime_ns, size, inode) differs from the one recorded
at its last read, and parsed again only when its bytes differ too.

File systems stamp mtimes from a coarse clock, so two same-sized writes in
place within one clock tick can leave identical fingerprints. As in git's
"racily clean" rule, a file whose mtime was less than ``RACY_WINDOW_NS`` old
when it was read is marked racy and read again on the next polls until it is
old enough; re-reading unchanged bytes costs a read and a hash, no parse.

A file larger than ``max_bytes`` is not read at all (its size is in the
fingerprint); it becomes a problem of that file, like an unreadable one.

Everything here is plain blocking code with no shared state, so a poll can
run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.limits import DEFAULT_LIMITS, file_too_large

__all__ = [
    "CONFIG_SUFFIXES",
    "RACY_WINDOW_NS",
    "Fingerprint",
    "Found",
    "Memo",
    "Observation",
    "Reading",
    "digest",
    "is_config_name",
    "observe",
    "observe_paths",
    "order_of",
]

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")

#: How young an mtime must be for its file to be re-read on the next poll.
#: Generous: it covers coarse kernel clocks (up to 10 ms) and small clock steps.
RACY_WINDOW_NS = 200_000_000


class Fingerprint(NamedTuple):
    """What ``stat`` says about a file; any change means "read it again"."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Fingerprint:
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


class Memo(NamedTuple):
    """What a poll remembers about a file it has read."""

    fingerprint: Fingerprint
    digest: bytes
    racy: bool


class Found(NamedTuple):
    """A configuration file that needs reading: new, changed, or racy."""

    path: str
    fingerprint: Fingerprint
    racy: bool


@dataclass(frozen=True, slots=True)
class Reading:
    """A file that was (re-)read. ``text`` is None when it could not be read or
    decoded; ``problem`` then says why. ``parse`` is False when the bytes equal
    those last parsed, so only the memo needs refreshing."""

    found: Found
    memo: Memo
    text: str | None
    problem: Diagnostic | None
    parse: bool


@dataclass(frozen=True, slots=True)
class Observation:
    """The result of one poll: what was read, which known files vanished,
    problems with the roots themselves (a configured path that does not exist),
    the directories walked and whether a configuration file in them was a
    symbolic link."""

    readings: tuple[Reading, ...]
    gone: frozenset[str]
    root_problems: tuple[Diagnostic, ...] | None  # None: the roots were not looked at
    directories: tuple[str, ...] = ()  # every directory walked (the roots' trees)
    links: bool = False  # a file was reached through a symbolic link


def is_config_name(name: str) -> bool:
    """Whether a directory entry named ``name`` is a configuration file to load.

    Hidden files (which include our own temporary files, Emacs lock files
    ``.#name`` and Vim swap files ``.name.swp``) and editor leftovers
    (``name~``, ``#name#``) are skipped.
    """
    if name.startswith((".", "#")) or name.endswith("~"):
        return False
    return name.endswith(CONFIG_SUFFIXES)


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def observe(
    roots: Sequence[Path],
    known: Mapping[str, Memo],
    max_bytes: int = DEFAULT_LIMITS.max_file_bytes,
) -> Observation:
    """One poll: find every configuration file under ``roots`` and read those
    that are new or changed since ``known`` (or still racy), unless larger
    than ``max_bytes``.

    A root naming a file is taken as is, whatever its name; directories are
    walked recursively, skipping hidden directories. Symbolic links to files
    are followed, links to directories are not (no cycles). A file reachable
    from two roots is taken from the first. Precedence between files is the
    caller's business (see ``order_of``); this only finds and reads.
    """
    scan = _Scan(known, dedupe=len(roots) > 1)
    problems: list[Diagnostic] = []
    for root in roots:
        try:
            st = os.stat(root)
        except OSError as exc:
            problems.append(_root_problem(root, exc))
            continue
        if stat.S_ISREG(st.st_mode):
            scan.file(str(root), st)
        elif stat.S_ISDIR(st.st_mode):
            scan.directory(str(root))
        else:
            problems.append(
                Diagnostic(Severity.WARNING, "not a file or directory", SourceRef(str(root)))
            )
    readings = tuple(_read(found, known.get(found.path), max_bytes) for found in scan.changed)
    gone = frozenset(path for path in known if path not in scan.present)
    return Observation(readings, gone, tuple(problems), tuple(scan.directories), scan.links)


def observe_paths(
    paths: Collection[str],
    known: Mapping[str, Memo],
    max_bytes: int = DEFAULT_LIMITS.max_file_bytes,
) -> Observation:
    """``observe`` for only ``paths``, files of directories a full scan walked (their
    writes were heard of): read those new or changed, report those gone.

    The same rules per file as a full scan (a symbolic link followed to its file,
    anything else not a regular file skipped); the roots are not looked at.
    """
    scan = _Scan(known, dedupe=False)
    for path in paths:
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                scan.links = True
                st = os.stat(path)
        except OSError:
            continue  # gone (or a dangling link): reported below if it was known
        if stat.S_ISREG(st.st_mode):
            scan.file(path, st)
    readings = tuple(_read(found, known.get(found.path), max_bytes) for found in scan.changed)
    gone = frozenset(path for path in paths if path in known and path not in scan.present)
    return Observation(readings, gone, None, links=scan.links)


def order_of(roots: Sequence[Path], path: str) -> tuple[int, tuple[str, ...]]:
    """Precedence of ``path``: the index of its root, then its path within that root."""
    for index, root in enumerate(roots):
        top = str(root)
        if path == top:
            return (index, ())
        prefix = top.rstrip(os.sep) + os.sep
        if path.startswith(prefix):
            return (index, tuple(path[len(prefix) :].split(os.sep)))
    return (len(roots), (path,))


class _Scan:
    """The walk of one poll. Kept lean: it runs for every file on every poll."""

    def __init__(self, known: Mapping[str, Memo], *, dedupe: bool) -> None:
        self.known = known
        self.present: set[str] = set()
        self.changed: list[Found] = []
        self.racy_after = time.time_ns() - RACY_WINDOW_NS
        self.seen: set[tuple[int, int]] | None = set() if dedupe else None
        self.directories: list[str] = []
        self.links = False

    def file(self, path: str, st: os.stat_result) -> None:
        if self.seen is not None:
            ident = (st.st_dev, st.st_ino)
            if ident in self.seen:
                return
            self.seen.add(ident)
        self.present.add(path)
        # A plain tuple compares equal to a Fingerprint and is cheaper to build.
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        memo = self.known.get(path)
        if memo is None or memo.racy or memo.fingerprint != seen:
            racy = st.st_mtime_ns > self.racy_after
            self.changed.append(Found(path, Fingerprint(*seen), racy))

    def directory(self, path: str) -> None:
        self.directories.append(path)
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    self._entry(entry)
        except OSError:
            return  # vanished or unreadable while walking: the next poll sees it

    def _entry(self, entry: os.DirEntry[str]) -> None:
        name = entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                if not name.startswith("."):
                    self.directory(entry.path)
            elif is_config_name(name):
                # From the directory entry's type: no system call.
                self.links = self.links or entry.is_symlink()
                st = entry.stat()  # follows a symlink to its file
                if stat.S_ISREG(st.st_mode):
                    self.file(entry.path, st)
        except OSError:
            pass  # removed between scandir and stat, or a dangling link


def _root_problem(root: Path, exc: OSError) -> Diagnostic:
    reason = "does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror
    return Diagnostic(Severity.WARNING, f"configured path {reason}", SourceRef(str(root)))


def _read(found: Found, previous: Memo | None, max_bytes: int) -> Reading:
    if found.fingerprint.size > max_bytes:
        return _too_large(found, max_bytes)
    try:
        with open(found.path, "rb") as fh:
            # The size stat gave, plus one byte to notice growth; never past the limit.
            data = fh.read(found.fingerprint.size + 1)
            if len(data) > found.fingerprint.size:
                data += fh.read(max_bytes + 1 - len(data))
    except OSError as exc:
        problem = Diagnostic(
            Severity.ERROR, f"cannot read file: {exc.strerror}", SourceRef(found.path)
        )
        memo = Memo(found.fingerprint, b"", racy=True)  # retry on the next poll
        return Reading(found, memo, None, problem, parse=True)
    if len(data) > max_bytes:  # grew after its stat
        return _too_large(found, max_bytes)
    memo = Memo(found.fingerprint, digest(data), found.racy)
    if previous is not None and previous.digest == memo.digest:
        return Reading(found, memo, None, None, parse=False)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = Diagnostic(
            Severity.ERROR,
            f"not valid UTF-8 (byte {exc.start})",
            SourceRef(found.path, data.count(b"\n", 0, exc.start) + 1),
        )
        return Reading(found, memo, None, problem, parse=True)
    return Reading(found, memo, text, None, parse=True)


def _too_large(found: Found, max_bytes: int) -> Reading:
    problem = Diagnostic(Severity.ERROR, file_too_large(max_bytes), SourceRef(found.path))
    # Read again only when the fingerprint changes (or while it is racy).
    return Reading(found, Memo(found.fingerprint, b"", found.racy), None, problem, parse=True)
