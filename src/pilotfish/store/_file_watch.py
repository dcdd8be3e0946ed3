"""How a file store watches its files: polls, and writes heard through inotify.

Theory of operation
-------------------
``start()`` loads everything once, then an asyncio task polls every
``poll_interval`` seconds. With one configured directory tree on Linux, writes
are also heard as they happen (``_inotify``): a file written, renamed into
place or removed is read at once, alone, without waiting for the next poll or
scanning the tree (at most once per ``_HEARD_GAP``, 100 ms, so a burst is read
in batches). The polls stay, for what inotify does not see (network file
systems, links out of the tree, a system out of watches); each full poll also
re-syncs the watched directories with the tree it walked. While inotify
covers the whole tree (every directory walked is watched, and no
configuration file is a symbolic link, whose target may lie outside), those
polls are only a backstop and run every ``covered_poll_interval`` seconds
(2 s by default):
at 1000 files each poll costs about 50 ms of CPU, and polling every 200 ms
took a quarter of a core from the control plane for nothing. A poll
``stat``s every file and re-reads only those whose (mtime_ns, size, inode)
changed (see ``_scan``), and parses only those whose bytes changed.

Scanning, reading and parsing run in a worker thread so a large tree never
stalls the event loop; the result is folded into the view (``_file_view``)
back on the loop. The watcher rests longer between polls if scanning gets
slow, so a huge tree cannot take over the machine. The rest follows the CPU
time of the scan (listing and ``stat``-ing the tree), not the wall time of the
whole poll: reading and parsing the files that changed is the work the
changes ask for, and a busy event loop or a thread waiting for the GIL is not
the store's cost. Resting in proportion to that too made a tree that changes
steadily fall further behind with every poll (more changed files per poll, a
longer poll, a longer rest, more changed files).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from pilotfish.store._file_view import FileView
from pilotfish.store._inotify import DirWatch, Events
from pilotfish.store._reading import TextLoader, poll_tree, read_paths, rest_after

__all__ = ["WatchedFiles"]

#: Heard writes are read at most this often (seconds between two reads): an
#: isolated write is read at once, a burst no more often than the default poll
#: would read it. Every read that changes something costs a snapshot downstream;
#: at 100 writes/s, reading every 20 ms built 227 snapshots a minute instead of ~90,
#: and the control plane, already at one core, fell further behind.
_HEARD_GAP = 0.1


class WatchedFiles(FileView):
    """A ``FileView`` kept up to date by polls and, where it can, inotify."""

    def __init__(
        self,
        roots: tuple[Path, ...],
        load_text: TextLoader,
        max_bytes: int,
        *,
        poll_interval: float,
        logger: logging.Logger,
        inotify: bool,
        covered_poll_interval: float,
    ) -> None:
        super().__init__(roots, load_text, max_bytes)
        self._poll_interval = poll_interval
        self._log = logger
        self._task: asyncio.Task[None] | None = None
        self._last_scan_cpu_s = 0.0
        # Writes heard through inotify (None: not started, not Linux, or several
        # roots) and not read yet; ``_wake`` is set when there are some.
        self._use_inotify = inotify
        self._notify: DirWatch | None = None
        self._heard = Events()
        self._wake = asyncio.Event()
        # inotify covers the whole tree: polls are a backstop, this far apart. What
        # they are still for (writes over a network file system) is seen within it.
        self._covered = False
        self._covered_poll_interval = covered_poll_interval

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
        if result.observation.links:
            self._covered = False  # a link's target may lie outside the watched tree
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
        next_poll = loop.time() + self._poll_rest()
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
                    next_poll = loop.time() + self._poll_rest()
                else:
                    last_read = loop.time()
                    await self._read_heard(heard.paths)
                    # A link heard ends the cover: the next poll is due sooner.
                    next_poll = min(next_poll, loop.time() + self._poll_rest())
            except Exception:  # keep watching: the next poll may well succeed
                self._log.exception("reading configuration files failed")
                next_poll = loop.time() + self._poll_interval

    @property
    def poll_rest(self) -> float:
        """Seconds from the end of one full poll to the next, as things stand."""
        return self._poll_rest()

    def _poll_rest(self) -> float:
        rest = rest_after(self._poll_interval, self._last_scan_cpu_s)
        return max(rest, self._covered_poll_interval) if self._covered else rest

    def _directories_seen(self, directories: tuple[str, ...], links: bool) -> None:
        notify = self._notify
        if notify is None:
            return
        before = notify.directories
        all_watched = notify.sync(directories)
        self._covered = all_watched and bool(directories) and not links
        if before and notify.directories - before:
            # Directories new since the last scan: a file written in one between
            # this scan's listing and its watch was heard by neither. Scan once more.
            self._heard.rescan = True
            self._wake.set()
