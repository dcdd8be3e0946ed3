"""Pure helpers of the replicas benchmark: which config a proxy holds, and when it got it.

Theory of operation. Each replica's ``/debug/syncz`` lists the proxies connected
to it with, per xDS type, the version last sent and the version ACKed. A
version is a digest of the resources' contents, so the same configuration has
the same version whichever replica computed it. The benchmark flips one
VirtualService between two states A and B. A warm-up applies A, then B, and
records each proxy's ACKed route version (RDS, with VHDS over delta) in each
state; the proxies whose version differs are the ones the flip reaches
(sidecars calling reviews; the ingress gateway's routes do not name reviews).
After a timed apply of state X, proxy ``p`` has the new configuration exactly
when its route ACK equals the version it ACKed in X during the warm-up,
whichever replica it is on.

``Arrivals`` keeps, per proxy, the first poll that showed it there and the
replica it was connected to then; ``per_replica_ms`` turns that into the time
by which every proxy of one replica had it. ``FlipProbe`` runs the warm-up and
the timed applies against any mesh (the benchmark's, the e2e test's), given
how to read a replica's API and how to apply a file through replica 1. A
warm-up state counts as reached when every replica's API serves the applied
object and its ``/debug/pushz`` says converged (snapshot built from what the
store holds, nothing pending, every proxy's ACK in).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.churn_markers import percentile

__all__ = [
    "ROUTE_TYPE",
    "ROUTE_TYPES",
    "Arrivals",
    "FlipProbe",
    "acked_routes",
    "flipped",
    "in_sync",
    "latency_summary",
    "placement",
]

ROUTE_TYPE = "RDS"  # the short name syncz uses for route configurations
# What carries a proxy's routes: route configurations, and their virtual hosts
# when they come over VHDS (delta streams).
ROUTE_TYPES = (ROUTE_TYPE, "VHDS")


def in_sync(row: Mapping[str, Any]) -> bool:
    """Every type the proxy subscribes to was sent and ACKed at the version sent."""
    types = [t for t in row.get("types", {}).values() if t.get("subscribed")]
    return bool(types) and all(
        t.get("sent_version") and t.get("acked_version") == t.get("sent_version") for t in types
    )


def acked_routes(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """proxy id -> the route version it ACKed, for proxies whose routes are in sync.

    Over delta xDS a route configuration's virtual hosts come over VHDS, so a
    VirtualService edit may change only the VirtualHost resources: the route
    version is then the RDS and VHDS versions together, and in sync when both are.
    """
    out: dict[str, str] = {}
    for row in rows:
        types = row.get("types", {})
        versions = []
        for short in ROUTE_TYPES:
            state = types.get(short)
            if not state or not state.get("subscribed"):
                continue
            acked = state.get("acked_version") or ""
            if not acked or acked != state.get("sent_version"):
                break
            versions.append(acked)
        else:
            if versions:
                out[str(row["proxy_id"])] = "+".join(versions)
    return out


def placement(rows_by_replica: Sequence[Iterable[Mapping[str, Any]]]) -> dict[str, int]:
    """proxy id -> the (0-based) replica it is connected to and in sync with."""
    return {
        str(row["proxy_id"]): replica
        for replica, rows in enumerate(rows_by_replica)
        for row in rows
        if in_sync(row)
    }


def flipped(state_a: Mapping[str, str], state_b: Mapping[str, str]) -> set[str]:
    """The proxies whose route version differs between the two states (seen in both)."""
    return {p for p, version in state_a.items() if p in state_b and state_b[p] != version}


@dataclass
class Arrivals:
    """When each proxy of ``targets`` (proxy id -> the version it must ACK) got there."""

    targets: Mapping[str, str]
    since: float  # time.monotonic() the latencies count from (``apply`` returned)
    at: dict[str, tuple[float, int]] = field(default_factory=dict)  # proxy -> (s, replica)

    def observe(self, replica: int, rows: Iterable[Mapping[str, Any]], now: float) -> None:
        """One poll of ``replica``'s syncz answered at ``now``."""
        for proxy, version in acked_routes(rows).items():
            if proxy not in self.at and self.targets.get(proxy) == version:
                self.at[proxy] = (now - self.since, replica)

    @property
    def complete(self) -> bool:
        return self.targets.keys() <= self.at.keys()

    @property
    def missing(self) -> list[str]:
        return sorted(self.targets.keys() - self.at.keys())

    def per_replica_ms(self, replica: int) -> float | None:
        """Milliseconds until every proxy that ACKed on ``replica`` had (None: it had none)."""
        times = [s for s, r in self.at.values() if r == replica]
        return round(max(times) * 1000, 1) if times else None

    def count(self, replica: int) -> int:
        return sum(1 for _, r in self.at.values() if r == replica)


def latency_summary(values_ms: Iterable[float | None]) -> dict[str, float | int | None]:
    """p50/p90/p99/max (ms) of the values given, and how many there were."""
    done = sorted(v for v in values_ms if v is not None)
    out: dict[str, float | int | None] = {
        f"p{q}": None if not done else round(percentile(done, q) or 0.0, 1) for q in (50, 90, 99)
    }
    return {**out, "max": done[-1] if done else None, "samples": len(done)}


VS_PATH = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews"
WEIGHTS = (90, 10)  # reviews v1's weight in states A and B (v2 has the rest)


def reviews_vs(v1_weight: int) -> str:
    """The flipped VirtualService: reviews v1 ``v1_weight`` %, v2 the rest."""
    route = [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": v1_weight},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 100 - v1_weight},
    ]
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews"], "http": [{"route": route}]},
    }
    return json.dumps(doc)


def _v1_weight(doc: Mapping[str, Any]) -> int | None:
    with contextlib.suppress(KeyError, IndexError, TypeError):
        return int(doc["spec"]["http"][0]["route"][0]["weight"])
    return None


Get = Callable[[int, str], Any]  # (0-based replica, API path) -> JSON; OSError if down


@dataclass
class FlipProbe:
    """The warm-up and the timed flips of one mesh with ``replicas`` replicas."""

    get: Get
    apply_file: Callable[[Path], None]  # ``pilotfish apply -f`` through replica 1
    replicas: int
    work: Path  # where the manifests are written
    poll_s: float = 0.01
    deadline_s: float = 30.0
    states: list[dict[str, str]] = field(default_factory=list)
    reached: set[str] = field(default_factory=set)

    def syncz(self) -> list[list[dict[str, Any]]]:
        return [list(self.get(r, "/debug/syncz")) for r in range(self.replicas)]

    def apply(self, v1_weight: int) -> float:
        """Apply one state; time.monotonic() when ``apply`` returned."""
        path = self.work / f"reviews-{v1_weight}.json"
        path.write_text(reviews_vs(v1_weight))
        self.apply_file(path)
        return time.monotonic()

    def _settled(self, v1_weight: int) -> dict[str, str] | None:
        for replica in range(self.replicas):
            if _v1_weight(self.get(replica, VS_PATH)) != v1_weight:
                return None
            if not self.get(replica, "/debug/pushz")["converged"]:
                return None
        rows = self.syncz()
        if not all(in_sync(row) for replica_rows in rows for row in replica_rows):
            return None
        versions: dict[str, str] = {}
        for replica_rows in rows:
            versions.update(acked_routes(replica_rows))
        return versions

    def learn(self, deadline_s: float = 60.0) -> set[str]:
        """Apply A then B, each until every replica converged; the proxies the flip reaches."""
        self.states = []
        for weight in WEIGHTS:
            self.apply(weight)
            end = time.monotonic() + deadline_s
            while (versions := self._quiet(self._settled, weight)) is None:
                if time.monotonic() > end:
                    raise TimeoutError(f"replicas did not converge on v1 weight {weight}")
                time.sleep(0.05)
            self.states.append(versions)
        self.reached = flipped(*self.states)
        return self.reached

    @staticmethod
    def _quiet(check: Callable[[int], dict[str, str] | None], arg: int) -> dict[str, str] | None:
        try:
            return check(arg)
        except (OSError, ValueError):
            return None

    def flip(self, i: int) -> tuple[Arrivals, float]:
        """Timed apply ``i`` (state A when even, B when odd, after ``learn``): polls every
        replica until each reached proxy ACKed it or the deadline. Returns the arrivals
        and how long ``apply`` itself took (ms)."""
        state = self.states[i % 2]
        started = time.monotonic()
        arrivals = Arrivals({x: state[x] for x in self.reached}, self.apply(WEIGHTS[i % 2]))
        end = arrivals.since + self.deadline_s
        while not arrivals.complete and time.monotonic() < end:
            tick = time.monotonic()
            for replica in range(self.replicas):
                with contextlib.suppress(OSError, ValueError):
                    rows = self.get(replica, "/debug/syncz")
                    arrivals.observe(replica, rows, time.monotonic())
            time.sleep(max(0.0, tick + self.poll_s - time.monotonic()))
        return arrivals, round((arrivals.since - started) * 1000, 1)
