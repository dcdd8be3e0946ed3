"""A small JSON file several control-plane processes share, changed under ``flock``.

The CA keeps its credentials' digests in such files in the CA directory
(``tokens.py``: pod tokens, ``join_tokens.py``: join tokens). Every replica
that uses the directory reads and writes the same file: a change holds an
exclusive ``flock`` on ``<file>.lock``, re-reads the file, applies itself and
writes the file back atomically (0600), so two processes never lose each
other's changes and a read-modify-write is atomic across them. A reader
notices another process's write by the file's (inode, mtime, size) stamp: one
``stat`` per lookup, a re-read only when it changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pilotfish.fsutil import atomic_write_text

__all__ = ["SharedFile"]


class SharedFile:
    """``path``, its lock file and the stamp of the version last read or written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``<path>.lock`` exclusively (blocks until the other holder is done)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def changed(self) -> bool:
        """Whether the file differs from the version last seen; remembers the new one."""
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    def read_json(self) -> Any:
        """The decoded file, or None when it does not exist (OSError/ValueError otherwise)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return json.loads(text)

    def write_json(self, doc: Any) -> None:
        """Replace the file atomically, 0600 (hold ``locked()`` around read and write)."""
        atomic_write_text(self.path, json.dumps(doc, indent=2) + "\n", mode=0o600)
        self._stamp = self._current_stamp()
