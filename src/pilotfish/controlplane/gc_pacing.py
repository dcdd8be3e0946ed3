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
for a quiet moment instead left the initial push's million objects unfrozen
when the next change came right after it, and the full collection that fell
in that change's push took 0.11 s of it.

A frozen object is still freed when its last reference goes (reference
counting is unaffected); only garbage held in reference cycles stays, since
the collector no longer looks at it. So once the frozen set has doubled
since everything was last walked, a longer quiet moment unfreezes, collects
everything once and freezes again (a sweep: one pause, about 0.2 s at 1000
services x 1000 proxies, at a time no push is waiting), which bounds what
cycles can keep to what is alive.
"""

from __future__ import annotations

import asyncio
import gc
import logging
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
        check_every: float = 0.1,
        count_every: float = 1.0,
        sweep_growth: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._activity = activity
        self._busy = busy
        self._sweep_quiet = sweep_quiet
        self._check_every = check_every
        self._count_every = count_every
        self._counted_at = -count_every
        self._sweep_growth = sweep_growth
        self._clock = clock
        self._seen = activity()
        self._changed_at = clock()
        self._sweep_due = False
        # Objects frozen right after the last sweep (or at start).
        self._swept_frozen = gc.get_freeze_count()
        self.freezes = 0
        self.sweeps = 0

    def step(self) -> str | None:
        """Check once; freeze or sweep if due. Returns what was done, if anything."""
        now = self._clock()
        current = self._activity()
        if current != self._seen:
            self._seen = current
            self._changed_at = now
            gc.freeze()
            self.freezes += 1
            if now - self._counted_at >= self._count_every:
                # Counting walks the frozen list: a few milliseconds at a million
                # objects, so at most once per ``count_every``.
                self._counted_at = now
                if gc.get_freeze_count() > self._swept_frozen * self._sweep_growth:
                    self._sweep_due = True
            return "freeze"
        if not self._sweep_due or self._busy() or now - self._changed_at < self._sweep_quiet:
            return None
        self._sweep_due = False
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._swept_frozen = gc.get_freeze_count()
        self.sweeps += 1
        _log.debug(
            "gc sweep: %.3f s, %d objects frozen",
            time.perf_counter() - started,
            self._swept_frozen,
        )
        return "sweep"

    async def run(self) -> None:
        """``step`` every ``check_every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._check_every)
            self.step()
