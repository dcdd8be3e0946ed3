"""Prometheus text exposition: Istio's metric names and merging of sources.

Envoy prints a stat ``istio.requests_total`` of the stats access logger as
``envoy_istio_requests_total`` and offers no way to drop its ``envoy_``
prefix, so the agent renames those families (and only those) to Istio's
``istio_requests_total``; Envoy's own stats keep their ``envoy_`` names, as in
Istio. Merging concatenates whole expositions; a family a later source
repeats is left out of it, because Prometheus rejects a scrape that declares
one family twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["istio_names", "merge_expositions"]

_ENVOY_ISTIO = re.compile(r"^(# (?:TYPE|HELP) )?envoy_istio_", re.MULTILINE)
_FAMILY_LINE = re.compile(r"^# (?:TYPE|HELP) ([a-zA-Z_:][a-zA-Z0-9_:]*)")
_SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")
# Suffixes Prometheus gives samples of one family (histograms, summaries, counters).
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_info")


def istio_names(text: str) -> str:
    """``text`` with ``envoy_istio_<name>`` families renamed ``istio_<name>``."""
    return _ENVOY_ISTIO.sub(r"\1istio_", text)


def _family_of(line: str, families: set[str]) -> str | None:
    if line.startswith("#"):
        match = _FAMILY_LINE.match(line)
        return match.group(1) if match else None
    match = _SAMPLE_NAME.match(line)
    if match is None:
        return None
    name = match.group(1)
    if name in families:
        return name
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return name


def merge_expositions(texts: Iterable[str]) -> str:
    """One exposition from several; families already seen are dropped from later ones."""
    seen: set[str] = set()
    out: list[str] = []
    for text in texts:
        declared = {m.group(1) for m in map(_FAMILY_LINE.match, text.splitlines()) if m}
        families = seen | declared
        for line in text.splitlines():
            if not line.strip():
                continue
            family = _family_of(line, families)
            if family is not None and family in seen:
                continue
            out.append(line)
        seen |= declared
    return "\n".join(out) + "\n" if out else ""
