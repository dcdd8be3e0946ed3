"""Times as people read them: a UTC date and how long ago (or how soon) it is."""

from __future__ import annotations

import time

import click

from pilotfish.api.duration import parse_duration_ms

__all__ = ["age", "duration_seconds", "when"]


def age(seconds: float) -> str:
    """``3d4h``, ``5h07m``, ``12m03s`` or ``42s`` (two units at most)."""
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def when(timestamp: float | None, now: float | None = None) -> str:
    """``2026-12-02 06:50:01 UTC (3m12s ago)``; ``in ...`` for a time to come; ``-`` for none."""
    if not timestamp:
        return "-"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    delta = now - timestamp
    relative = f"{age(delta)} ago" if delta >= 0 else f"in {age(delta)}"
    return f"{stamp} ({relative})"


def duration_seconds(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """A click callback: ``90s``, ``1h``, ``24h`` as whole seconds, at least one."""
    try:
        ms = parse_duration_ms(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if ms < 1000:
        raise click.BadParameter("must be at least 1s")
    return ms // 1000
