"""Istio's metric labels packed into one Envoy stats tag, and unpacked again.

Theory of operation: Envoy's stats access logger pays for every tag of every
stat on every request (it formats the tag, then copies its name and value
into dynamic stat-name storage before the stat lookup): Istio's 24 labels as
tags on four stats cost 9-13 µs of Envoy CPU per request, one tag packing the
same operators 5-8 µs (``bench/stats_tags_cost.py``). So each stat carries a
single tag,
``PACKED_TAG``, whose one format string holds every label:

- ``name=FORMAT``: a label Envoy fills per request (a command operator such as
  ``%RESPONSE_CODE%``, or a literal such as ``mutual_tls``);
- ``name@``: a label constant for the proxy (its own workload, app,
  principal ...): Envoy does no work for it; whoever unpacks fills it from the
  proxy's facts (``OWN_LABELS`` in ``pilotfish.peer_labels`` names the
  environment variable the agent would give Envoy for it);
  ``name@VARIABLE`` is another of those variables (a Telemetry override);
- ``side~FORMAT``: a peer record (``pilotfish.peer_labels.peer_record``, the
  one header a client proxy sends): ``side_workload``, ``side_app`` ... for
  each of its facts, ``unknown`` for one it lacks. A label given by a field of
  its own, or removed by ``label!``, is not taken from the record (Telemetry
  overrides of one of its labels).

Fields are joined by ``SEPARATOR`` (ASCII unit separator, 0x1F), which none of
the values can hold: Envoy's HTTP codecs refuse control characters in header
values (so neither ``%REQ(...)%`` nor the peer headers moved into metadata can
carry it), certificates' URI SANs are SPIFFE ids, and the control plane's
endpoint metadata are validated label values. Unpacking still survives one
(``unpack``): the result never names a label twice, loses none, and never
takes a label's value from a field that another field contradicts.

The agent unpacks when it serves ``/stats/prometheus`` (``agent/prom_text.py``),
at scrape time, never on the request path.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

from pilotfish.peer_labels import (
    OWN_LABELS,
    OWN_VARIABLES,
    PEER_SUFFIXES,
    UNKNOWN,
    parse_peer_record,
)

__all__ = ["PACKED_TAG", "RECORD", "REMOVED", "SEPARATOR", "pack", "unpack"]

PACKED_TAG = "pilotfish_labels"
SEPARATOR = "\x1f"

# Label-dict keys ``pack`` reads as a record (``source~``) and as a removal (``source_app!``).
RECORD = "~"
REMOVED = "!"
_FIELD = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)([=@~!])(.*)\Z", re.DOTALL)
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")
_OWN_FORMATS = {f"%ENVIRONMENT({var})%": var for var in OWN_VARIABLES}


def _label_name(name: str) -> str:
    """Prometheus' form of a tag name, as Envoy prints it (other characters become ``_``)."""
    clean = _NOT_NAME.sub("_", name)
    return f"_{clean}" if not clean or clean[0].isdigit() else clean


def pack(labels: Iterable[tuple[str, str]]) -> str:
    """One Envoy format string for ``(label, format)`` pairs; a format that only
    reads one of the proxy's own variables becomes ``label@VARIABLE``; a key
    ``side~`` is a record field, ``label!`` a removal (its format unused)."""
    fields = []
    for name, fmt in labels:
        if name.endswith((RECORD, REMOVED)):
            fields.append(f"{_label_name(name[:-1])}{name[-1]}{fmt if name[-1] == RECORD else ''}")
            continue
        var = _OWN_FORMATS.get(fmt)
        label = _label_name(name)
        if var is None:
            fields.append(f"{label}={fmt}")
        else:
            fields.append(f"{label}@" if OWN_LABELS.get(label) == var else f"{label}@{var}")
    return SEPARATOR.join(fields)


def _parse(field: str) -> tuple[str, str, str] | None:
    """``(name, "=", value)`` or ``(name, "@", variable)`` of one field; None if it is not one."""
    match = _FIELD.match(field)
    if match is None:
        return None
    name, kind, rest = match.groups()
    if kind == "@":
        rest = rest or OWN_LABELS.get(name, "")
        if rest not in OWN_VARIABLES:
            return None
    if kind == REMOVED and rest:
        return None
    if kind in (RECORD, REMOVED):
        name += kind  # its own namespace: never the same as a label's
    return name, kind, rest


def unpack(value: str, own: Mapping[str, str]) -> list[tuple[str, str]]:
    """The labels of a packed tag value as Envoy printed it; ``own`` maps the
    proxy's variables to their values (one it lacks is ``unknown``).

    A field that is not a label continues the value before it (that value held
    the separator). A label named by more than one field cannot be told from
    a forgery: it is ``unknown``, and its later fields are continuations too.
    """
    fields = [(field, _parse(field)) for field in value.split(SEPARATOR)]
    counts = Counter(parsed[0] for _field, parsed in fields if parsed is not None)
    # Labels a record must not give: named by a field of their own, or removed.
    taken = {p[0].rstrip(REMOVED) for _f, p in fields if p is not None and p[1] != RECORD}
    labels: list[tuple[str, str]] = []
    seen: set[str] = set()
    for field, parsed in fields:
        if parsed is None or parsed[0] in seen:
            if labels:
                name, previous = labels[-1]
                labels[-1] = (name, f"{previous}{SEPARATOR}{field}")
            continue
        name, kind, rest = parsed
        seen.add(name)
        if kind == REMOVED:
            continue
        if kind == RECORD:
            side = name[:-1]
            facts = {} if counts[name] > 1 else parse_peer_record(rest)
            labels += [
                (f"{side}_{suffix}", facts.get(suffix, UNKNOWN))
                for suffix in PEER_SUFFIXES
                if f"{side}_{suffix}" not in taken
            ]
        elif counts[name] > 1:
            labels.append((name, UNKNOWN))
        else:
            labels.append((name, rest if kind == "=" else own.get(rest, UNKNOWN)))
    return labels
