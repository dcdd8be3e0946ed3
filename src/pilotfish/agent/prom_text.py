"""Prometheus text exposition: Istio's metric names and labels, and merging of sources.

Envoy prints a stat ``istio.requests_total`` of the stats access logger as
``envoy_istio_requests_total`` and offers no way to drop its ``envoy_``
prefix, so the agent renames those families (and only those) to Istio's
``istio_requests_total``; Envoy's own stats keep their ``envoy_`` names, as in
Istio. The same families carry their labels packed into one tag
(``pilotfish.packed_labels``): each of their samples gets Istio's labels back,
those constant for the proxy filled from its own facts, before the labels
Envoy adds itself (a histogram bucket's ``le``). Merging concatenates whole
expositions; a family a later source repeats is left out of it, because
Prometheus rejects a scrape that declares one family twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pilotfish.packed_labels import PACKED_TAG, unpack

__all__ = ["istio_names", "merge_expositions", "parse_labels"]

_ENVOY_ISTIO = "envoy_istio_"
_FAMILY_LINE = re.compile(r"^# (?:TYPE|HELP) ([a-zA-Z_:][a-zA-Z0-9_:]*)")
_SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")
_LABEL_NAME = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*\"")
# Suffixes Prometheus gives samples of one family (histograms, summaries, counters).
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_info")
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


class _BadLabels(ValueError):
    """A label set that is not Prometheus text."""


def parse_labels(text: str, start: int) -> tuple[list[tuple[str, str]], int]:
    """The ``{name="value",...}`` label set opening at ``text[start]``, unescaped,
    and the index after its closing brace; raises ValueError on malformed text."""
    labels: list[tuple[str, str]] = []
    i = start + 1
    while True:
        while i < len(text) and text[i] in " ,":
            i += 1
        if i < len(text) and text[i] == "}":
            return labels, i + 1
        match = _LABEL_NAME.match(text, i)
        if match is None:
            raise _BadLabels(f"no label name at {i}")
        i = match.end()
        value: list[str] = []
        while True:
            if i >= len(text):
                raise _BadLabels("unterminated label value")
            char = text[i]
            if char == '"':
                i += 1
                break
            if char == "\\" and i + 1 < len(text):
                value.append(_UNESCAPE.get(text[i + 1], "\\" + text[i + 1]))
                i += 2
                continue
            value.append(char)
            i += 1
        labels.append((match.group(1), "".join(value)))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_labels(labels: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels)


def _istio_sample(line: str, own: Mapping[str, str], cache: dict[str, str]) -> str:
    """A sample line of an ``envoy_istio_`` family with Istio's name and labels."""
    renamed = line[len("envoy_") :]
    name = _SAMPLE_NAME.match(renamed)
    brace = name.end() if name else -1
    if brace < 0 or renamed[brace : brace + 1] != "{":
        return renamed
    try:
        labels, end = parse_labels(renamed, brace)
    except ValueError:
        return renamed
    packed = [value for label, value in labels if label == PACKED_TAG]
    if not packed:
        return renamed
    expanded = cache.get(packed[0])
    if expanded is None:
        expanded = _format_labels(unpack(packed[0], own))
        cache[packed[0]] = expanded
    rest = _format_labels((label, value) for label, value in labels if label != PACKED_TAG)
    joined = f"{expanded},{rest}" if expanded and rest else expanded or rest
    return f"{renamed[:brace]}{{{joined}}}{renamed[end:]}"


def istio_names(text: str, own: Mapping[str, str] | None = None) -> str:
    """``text`` with ``envoy_istio_<name>`` families renamed ``istio_<name>`` and
    their packed labels unpacked; ``own`` maps the proxy's own variables
    (``agent/workload_env.workload_labels``) to their values (missing: ``unknown``)."""
    facts = own or {}
    cache: dict[str, str] = {}
    out: list[str] = []
    for line in text.split("\n"):
        if line.startswith(_ENVOY_ISTIO):
            out.append(_istio_sample(line, facts, cache))
        elif line.startswith(("# TYPE envoy_istio_", "# HELP envoy_istio_")):
            out.append(line[:7] + line[7 + len("envoy_") :])
        else:
            out.append(line)
    return "\n".join(out)


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
