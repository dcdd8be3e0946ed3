"""Hearing about configuration file writes as they happen (Linux inotify).

Theory of operation: the file store polls its tree, and a poll interval is
latency every change pays (0-100 ms at the default interval, 50 ms on
average). On Linux the kernel can say which directory entries changed:
``DirWatch`` keeps one inotify watch per directory the store's last full scan
walked and turns the events into the set of configuration file paths to read
again. It is the stdlib through ``ctypes`` (three libc calls) rather than a
third-party package: the store needs only "which names in these directories
were written, renamed or removed", nothing a library adds is used, and there is
nothing to pin or vendor.

What inotify cannot tell precisely asks for a full scan (``Events.rescan``): a
directory created, removed or renamed (its files were never watched), a
watched directory gone, or the kernel's event queue overflowing. What it does
not see at all is left to the poll, which stays: files written over a network
file system, the target of a symbolic link outside the watched directories,
directories created between a scan and their watch, or a system out of
watches (``add`` then fails quietly). Events report writes that are complete
(``IN_CLOSE_WRITE``, a rename into place, a removal), not each ``write(2)``,
so a file is not read half-written on their account.

Not thread-safe: owned by the store, used from the event loop's thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from pilotfish.store._scan import is_config_name

__all__ = ["DirWatch", "Events"]

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_FROM = 0x00000040
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE = 0x00000200
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000

# IN_CREATE too: a symbolic link made in place (``ln -s``) reports nothing else.
_MASK = (
    _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ_SIZE = 64 * 1024


@dataclass(slots=True)
class Events:
    """What the events read so far ask for: these paths read again, or a full scan."""

    paths: set[str] = field(default_factory=set)
    rescan: bool = False

    def __bool__(self) -> bool:
        return self.rescan or bool(self.paths)


class DirWatch:
    """inotify watches on a set of directories; see the module docstring."""

    def __init__(self, fd: int, libc: ctypes.CDLL) -> None:
        self._fd = fd
        self._libc = libc
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory
        self._wds: dict[str, int] = {}

    @classmethod
    def open(cls) -> DirWatch | None:
        """A new watch, or None where inotify is unavailable (not Linux, no watches left)."""
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            init = libc.inotify_init1
        except (OSError, AttributeError):
            return None
        init.argtypes = [ctypes.c_int]
        init.restype = ctypes.c_int
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_add_watch.restype = ctypes.c_int
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.inotify_rm_watch.restype = ctypes.c_int
        fd = init(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        return cls(fd, libc)

    def fileno(self) -> int:
        return self._fd

    @property
    def directories(self) -> frozenset[str]:
        return frozenset(self._wds)

    def sync(self, directories: Iterable[str]) -> bool:
        """Watch exactly ``directories`` (those a full scan walked); True if every
        one of them is watched."""
        wanted = set(directories)
        for gone in set(self._wds) - wanted:
            wd = self._wds.pop(gone)
            self._dirs.pop(wd, None)
            self._libc.inotify_rm_watch(self._fd, wd)
        for path in wanted - set(self._wds):
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _MASK)
            if wd >= 0:  # else (gone, no watches left): the poll still sees it
                self._wds[path] = wd
                self._dirs[wd] = path
        return wanted <= self._wds.keys()

    def read(self, into: Events) -> None:
        """Add the events waiting to be read to ``into`` (never blocks)."""
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                into.rescan = True
                return
            self._parse(data, into)
            if len(data) < _READ_SIZE - 4096:
                return  # drained (a full buffer may have more waiting)

    def _parse(self, data: bytes, into: Events) -> None:
        offset, size = 0, len(data)
        while offset + _HEADER.size <= size:
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size
            raw = data[offset : offset + length].split(b"\0", 1)[0]
            offset += length
            if mask & _IN_Q_OVERFLOW:
                into.rescan = True
                continue
            directory = self._dirs.get(wd)
            if directory is None:
                continue  # a watch already removed
            if mask & (_IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF):
                if mask & _IN_IGNORED:  # the kernel dropped the watch
                    self._dirs.pop(wd, None)
                    self._wds.pop(directory, None)
                into.rescan = True
                continue
            name = os.fsdecode(raw)
            if mask & _IN_ISDIR:
                # A directory came or went: scan for what it holds (hidden ones are
                # never walked, so they do not matter).
                into.rescan = into.rescan or not name.startswith(".")
            elif is_config_name(name):
                into.paths.add(os.path.join(directory, name))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._dirs.clear()
        self._wds.clear()
