"""Keeping the cyclic garbage collector's full collections out of pushes.

Theory of operation
-------------------
CPython's cyclic collector runs a full (generation 2) collection when the
objects that survived into the oldest generation since the last one exceed a
quarter of those it holds. A push to a thousand proxies creates that many
long-lived objects (a new configuration, per-stream state), so full
collections fell in the middle of pushes: at 1000 services x 1000 proxies one
took 0.11 s of a 0.57 s VirtualService edit, and ten took 1.0 s of the initial
push. Their cost is the number of objects they walk, every live one.

The standalone control plane freezes what it loaded at start
(``gc.freeze()``: frozen objects are never walked). ``GcPacer`` freezes
again every ``check_every`` seconds in which the xDS server did something (a
push planned, a proxy connected), while it works too: a freeze moves the
collector's lists whole and costs nothing, whatever the heap. Full
collections then walk only what was created since the last freeze. Waiting
for a quiet moment instead left the initial push's objects unfrozen when the
next change came right after it, and the full collection that fell in that
change's push took 0.11 s of it.

A frozen object is still freed when its last reference goes (reference
counting is unaffected); only garbage held in reference cycles stays, since
the collector no longer looks at it. So once the heap has doubled since
everything was last walked, a quiet second (no activity, nothing to write)
unfreezes, collects everything once and freezes again: a sweep, one pause of
about 0.2 s at 1000 services x 1000 proxies, at a time no push is waiting.
That bounds what cycles can keep to what is alive. Under changes that never
pause (endpoint churn) a sweep due for ``sweep_within`` seconds (30) runs
anyway, so memory stays bounded however long the churn lasts. The heap is
measured with ``sys.getallocatedblocks`` (0.1-0.3 ms), at most once a
second; counting the frozen objects would walk them (34 ms at 300,000).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Callable

__all__ = ["GcPacer"]

_log = logging.getLogger(__name__)


class GcPacer:
    """Freezes after activity, and sweeps now and then when quiet; see the module doc.

    ``activity`` returns a number that changes whenever a push completes or a
    proxy connects; ``busy`` is true while a push is pending or running or
    responses wait to be written.
    """

    def __init__(
        self,
        activity: Callable[[], int],
        busy: Callable[[], bool],
        *,
        sweep_quiet: float = 1.0,
        sweep_within: float = 30.0,
        check_every: float = 0.1,
        count_every: float = 1.0,
        sweep_growth: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        heap_size: Callable[[], int] = sys.getallocatedblocks,
    ) -> None:
        self._activity = activity
        self._busy = busy
        self._sweep_quiet = sweep_quiet
        self._sweep_within = sweep_within
        self._due_since = 0.0
        self._check_every = check_every
        self._count_every = count_every
        self._counted_at = -count_every
        self._sweep_growth = sweep_growth
        self._clock = clock
        self._seen = activity()
        self._changed_at = clock()
        self._sweep_due = False
        self._heap_size = heap_size
        # The heap's size right after the last sweep (or at start).
        self._swept_size = heap_size()
        self.freezes = 0
        self.sweeps = 0

    def step(self) -> str | None:
        """Check once; freeze or sweep if due. Returns what was done, if anything."""
        now = self._clock()
        current = self._activity()
        if self._sweep_due and now - self._due_since >= self._sweep_within:
            self._seen = current  # the sweep freezes what that activity left too
            return self._sweep()
        if current != self._seen:
            self._seen = current
            self._changed_at = now
            gc.freeze()
            self.freezes += 1
            if now - self._counted_at >= self._count_every:
                self._counted_at = now
                if not self._sweep_due and (
                    self._heap_size() > self._swept_size * self._sweep_growth
                ):
                    self._sweep_due = True
                    self._due_since = now
            return "freeze"
        if not self._sweep_due or self._busy() or now - self._changed_at < self._sweep_quiet:
            return None
        return self._sweep()

    def _sweep(self) -> str:
        self._sweep_due = False
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._swept_size = self._heap_size()
        self.sweeps += 1
        _log.debug(
            "gc sweep: %.3f s, heap %d blocks", time.perf_counter() - started, self._swept_size
        )
        return "sweep"

    async def run(self) -> None:
        """``step`` every ``check_every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._check_every)
            self.step()
