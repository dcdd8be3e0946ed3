"""Endpoint markers for the churn benchmark, and the statistics of its results.

Theory of operation: change number ``k`` of a churn run moves one endpoint of
service ``k mod N`` (endpoint slot ``(k div N) mod 4``) to an address that
encodes ``k`` (``marker_address``), in ``127.64.0.0/10``, a block no other
benchmark address uses. Every ``ClusterLoadAssignment`` that holds the endpoint
afterwards carries the marker, so a simulated proxy can tell which changes a
load assignment it ACKed contains (``newest_marker``).

Changes of one service are written round-robin, so their markers grow with
time: the newest marker of a service in a load assignment says that every
earlier change of that service has reached it too (a later version that
superseded an earlier one before a proxy saw it still counts the earlier one
as delivered, as a proxy that skipped a version holds its successor).
``MarkerTracker`` counts, per change, the proxies that have ACKed it and when
the last one needed did.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2

from bench.config_gen import ENDPOINTS_PER_SERVICE
from pilotfish.xds.types import ENDPOINT_TYPE

__all__ = [
    "MAX_MARKERS",
    "MarkerTracker",
    "change_slot",
    "default_cluster_service",
    "marker_address",
    "marker_of",
    "newest_marker",
    "percentile",
    "summarize",
]

_FIRST_OCTET, _SECOND_LOW, _SECOND_HIGH = 127, 64, 128
MAX_MARKERS = (_SECOND_HIGH - _SECOND_LOW) << 16
_DEFAULT_CLUSTER_PREFIX = "outbound|9080||svc-"


def marker_address(k: int) -> str:
    """The endpoint address that marks change ``k``: ``127.(64 + k>>16).x.y``."""
    if not 0 <= k < MAX_MARKERS:
        raise ValueError(f"marker {k} out of range 0..{MAX_MARKERS - 1}")
    return f"{_FIRST_OCTET}.{_SECOND_LOW + (k >> 16)}.{(k >> 8) & 0xFF}.{k & 0xFF}"


def marker_of(address: str) -> int | None:
    """The change ``address`` marks, or None for any other address."""
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    a, b, c, d = (int(p) for p in parts)
    if a != _FIRST_OCTET or not _SECOND_LOW <= b < _SECOND_HIGH or c > 255 or d > 255:
        return None
    return ((b - _SECOND_LOW) << 16) | (c << 8) | d


def change_slot(k: int, services: int) -> tuple[int, int]:
    """``(service, endpoint)`` that change ``k`` moves: services round-robin."""
    return k % services, (k // services) % ENDPOINTS_PER_SERVICE


def newest_marker(assignment: endpoint_pb2.ClusterLoadAssignment) -> int:
    """The highest marker among the assignment's endpoint addresses; -1 if none."""
    newest = -1
    for locality in assignment.endpoints:
        for lb in locality.lb_endpoints:
            k = marker_of(lb.endpoint.address.socket_address.address)
            if k is not None and k > newest:
                newest = k
    return newest


def default_cluster_service(name: str) -> int | None:
    """``i`` for the default (subset-less) cluster of ``svc-<i>``'s port 9080, else None."""
    if not name.startswith(_DEFAULT_CLUSTER_PREFIX):
        return None
    rest = name[len(_DEFAULT_CLUSTER_PREFIX) :]
    number = rest.split(".", 1)[0]
    return int(number) if number.isdigit() else None


class MarkerTracker:
    """Which simulated proxies have ACKed which change, and when.

    ``begin(markers, subscriptions)`` fixes the number of changes and, from each
    stream's EDS subscription, how many proxies each service's changes must
    reach. ``on_ack`` is the delta stream's ``AckObserver``. Per stream it keeps
    the newest marker ACKed per service (one small array per stream); what a
    load assignment holds is parsed once per distinct resource entry.
    """

    def __init__(self, services: int, streams: int) -> None:
        self.services = services
        self._streams = streams
        self._newest_in: dict[object, int] = {}
        self._seen: list[array[int]] = []
        self.expected: list[int] = []
        self.count: array[int] = array("i")
        self.complete_at: list[float | None] = []
        self.last_at: list[float | None] = []
        self.parses = 0

    @property
    def active(self) -> bool:
        return bool(self._seen)

    def begin(self, markers: int, subscriptions: Sequence[Iterable[str]]) -> None:
        """Start counting ``markers`` changes; ``subscriptions[i]``: stream i's EDS names."""
        expected = [0] * self.services
        by_names: dict[int, list[int]] = {}
        for names in subscriptions:
            # Streams share their subscription tuples; parse each distinct one once.
            found = by_names.get(id(names))
            if found is None:
                found = by_names[id(names)] = [
                    s
                    for s in (default_cluster_service(n) for n in names)
                    if s is not None and s < self.services
                ]
            for s in found:
                expected[s] += 1
        self.expected = expected
        self.count = array("i", [0]) * markers
        self.complete_at = [None] * markers
        self.last_at = [None] * markers
        self._seen = [array("i", [-1]) * self.services for _ in range(self._streams)]

    def on_ack(self, index: int, response: Any, acked_at: float) -> None:
        """``response``: a ``DeltaDiscoveryResponse``, or the simulator's light form
        whose ``resources`` are the serialized ``Resource`` entries."""
        if not self._seen or response.type_url != ENDPOINT_TYPE:
            return
        seen, services, cache = self._seen[index], self.services, self._newest_in
        for entry in response.resources:
            # The raw entry (name, version, resource) is its own key; a parsed one
            # is keyed by name and version, a digest of its contents.
            key = entry if isinstance(entry, bytes) else (entry.name, entry.version)
            newest = cache.get(key)
            if newest is None:
                resource = (
                    discovery_pb2.Resource.FromString(entry) if isinstance(entry, bytes) else entry
                )
                assignment = endpoint_pb2.ClusterLoadAssignment.FromString(resource.resource.value)
                newest = cache[key] = newest_marker(assignment)
                self.parses += 1
            if newest < 0:
                continue
            service = newest % services
            before = seen[service]
            if newest <= before:
                continue
            seen[service] = newest
            first = before + services if before >= 0 else service
            self._count(range(first, newest + 1, services), service, acked_at)

    def _count(self, changes: range, service: int, acked_at: float) -> None:
        count, needed = self.count, self.expected[service]
        for k in changes:
            if k >= len(count):
                break
            count[k] += 1
            self.last_at[k] = acked_at
            if count[k] == needed:
                self.complete_at[k] = acked_at

    def completed(self) -> int:
        return sum(1 for at in self.complete_at if at is not None)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of sorted ``ordered``, linearly interpolated."""
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(latencies: Iterable[float | None]) -> dict[str, float | int | None]:
    """Count, converged count (not None), never converged and p50/p90/p99/max."""
    values = list(latencies)
    done = sorted(v for v in values if v is not None)
    return {
        "changes": len(values),
        "converged": len(done),
        "never_converged": len(values) - len(done),
        "p50_s": percentile(done, 50),
        "p90_s": percentile(done, 90),
        "p99_s": percentile(done, 99),
        "max_s": done[-1] if done else None,
    }
