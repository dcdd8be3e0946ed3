"""A one-entry cache for converters, keyed by the resources they read.

Theory of operation: ``derive`` runs every converter on every snapshot build,
but a converter's output depends only on a few kinds (an Ingress converter
reads Ingresses, IngressClasses, Services, Secrets and the ingress gateway's
WorkloadEntries). ``memoized(reads, convert)`` returns the previous result
when the resources ``reads`` keeps, and the context, are the same as in the
previous call. One entry is enough: snapshots are built one after another,
each from the last. Converters stay pure functions; the cache only skips
recomputing an equal result.

Two ways to tell, cheapest first:

- The store hands back the very same objects for unchanged documents, in the
  same order, so a build after an edit differs from the last one in a few
  positions. When the list has the same length, those positions are found by
  identity (one pass, no call per object), and if none of the objects there,
  before or after, is one ``reads`` keeps, the inputs are the very same.
  Asking ``reads`` of thousands of objects on every build cost more than the
  conversion it saved.
- Otherwise the inputs are filtered and compared with the previous ones
  (tuple equality compares identical elements by identity first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from pilotfish.api.resource import Resource
from pilotfish.translate.conversion import Conversion, ConversionContext, Converter

__all__ = ["memoized"]


@dataclass(frozen=True, slots=True)
class _Entry:
    context: ConversionContext
    given: tuple[Resource, ...]  # everything the call was given
    inputs: tuple[Resource, ...]  # what ``reads`` kept of it
    result: Conversion


def memoized(reads: Callable[[Resource], bool], convert: Converter) -> Converter:
    """``convert`` over the resources ``reads`` keeps, remembering the last result."""
    lock = threading.Lock()
    last: list[_Entry] = []

    def cached(resources: tuple[Resource, ...], ctx: ConversionContext) -> Conversion:
        with lock:
            entry = last[0] if last else None
        if (
            entry is not None
            and entry.context == ctx
            and _same_inputs(entry.given, resources, reads)
        ):
            with lock:
                last[:] = [_Entry(ctx, resources, entry.inputs, entry.result)]
            return entry.result
        inputs = tuple(r for r in resources if reads(r))
        if entry is not None and entry.context == ctx and entry.inputs == inputs:
            out = entry.result
        else:
            out = convert(inputs, ctx)
        with lock:
            last[:] = [_Entry(ctx, resources, inputs, out)]
        return out

    cached.__doc__ = convert.__doc__
    return cached


def _same_inputs(
    before: tuple[Resource, ...], now: tuple[Resource, ...], reads: Callable[[Resource], bool]
) -> bool:
    """Whether ``reads`` keeps the very same objects of ``now`` as of ``before``,
    told from the positions where they differ (same length only)."""
    if before is now:
        return True
    if len(before) != len(now):
        return False
    return not any(reads(a) or reads(b) for a, b in zip(before, now, strict=True) if a is not b)
