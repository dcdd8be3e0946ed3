"""What the data-plane modes benchmark's modules share: its ranges, names, parameters, targets.

A leaf: it imports none of the other ``dataplane_modes*`` modules, so each of them
(the entry point, the meshes, the reference, the tables) can import it.
``measure`` is the one load procedure both the chain rows and the reference use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import LoadSpec, run_hey

__all__ = [
    "AMBIENT_LATENCY_TARGET",
    "BOOKINFO",
    "BOOKINFO_PODS",
    "BRIDGE",
    "CHAIN_PROXY_PAIRS",
    "EXPLICIT_CIDR",
    "FRONT_APP",
    "MEMORY_TARGET",
    "NAMESPACE",
    "NETNS_PREFIX",
    "PERCENTILES",
    "POD_CIDR",
    "PORT",
    "REF_CLIENT_IP",
    "REF_SERVER_IP",
    "REPO",
    "SERVICE_CIDR",
    "WAYPOINT",
    "WAYPOINT_LATENCY_TARGET",
    "WAYPOINT_STATS",
    "Log",
    "ModesParams",
    "measure",
]

REPO = Path(__file__).resolve().parent.parent
BOOKINFO = REPO / "samples" / "bookinfo"
FRONT_APP = Path(__file__).resolve().parent / "chain_front.py"

BRIDGE = "pfbm0"
NETNS_PREFIX = f"{BRIDGE}-"
POD_CIDR = "198.18.252.0/24"
SERVICE_CIDR = "198.19.252.0/24"
EXPLICIT_CIDR = "127.81.252.0/24"  # unused in transparent mode; kept off the default range
NAMESPACE = "chain"
PORT = 9080
REF_CLIENT_IP = "127.0.80.1"
REF_SERVER_IP = "127.0.80.2"

PERCENTILES = ("p50", "p90", "p99")
# The chain crosses two proxy pairs (client->front, front->back); the reference one.
CHAIN_PROXY_PAIRS = 2
AMBIENT_LATENCY_TARGET = 0.5
MEMORY_TARGET = 1 / 3
WAYPOINT_LATENCY_TARGET = 1.0
WAYPOINT = "waypoint"  # the Gateway's name, its pod's and its netns'
# The waypoint's CONNECT streams (its HBONE listener) and the requests its HTTP
# proxy listener routed.
WAYPOINT_STATS = (
    "http.waypoint_hbone.downstream_rq_total",
    "http.outbound_127.0.0.1_15001.downstream_rq_total",
)
BOOKINFO_PODS = (
    "details-v1-0",
    "productpage-v1-0",
    "ratings-v1-0",
    "reviews-v1-0",
    "reviews-v2-0",
    "reviews-v3-0",
)


@dataclass(frozen=True, slots=True)
class ModesParams:
    """Load shapes and bounds. ``rate`` is the total over ``connections``."""

    rate: int
    connections: int
    response_bytes: int
    duration_s: float
    warmup_s: float
    ingress_rate: int
    ingress_connections: int
    ingress_duration_s: float
    envoy_concurrency: int = 2  # what `pilotfish agent` gives a sidecar's Envoy
    up_timeout_s: float = 300.0
    ready_deadline_s: float = 90.0


Log = Callable[[str], None]


def measure(spec: LoadSpec, warmup_s: float, hey: str) -> dict[str, Any]:
    """A warm-up run (discarded), then the measured run, with the load average around it."""
    if warmup_s > 0:
        run_hey(LoadSpec(**{**asdict(spec), "duration_s": warmup_s}), hey)
    load_before = os.getloadavg()[0]
    result = run_hey(spec, hey).as_dict()
    result["load_average"] = [load_before, os.getloadavg()[0]]
    return result
