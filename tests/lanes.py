"""Machine-global names for tests that run in parallel lanes (pytest-xdist workers).

Theory of operation: ``make test`` runs the suite in several pytest-xdist
workers (``gw0``, ``gw1``, ...; ``TEST_LANES``), each module on one worker.
Meshes of several modules can then be up at the same time on one host, so
everything a mesh puts on the host must differ between lanes: the bridge (and
with it the netns prefix ``<bridge>-``, which the runtime derives from it),
the pod and service ranges (two bridges holding the same /24 would fight over
the host's route) and the explicit-mode loopback range (two pods on one
address would fight over its ports), and the ports ``free_port`` picks: it
probes that a port is free, but cannot see a port the other lane picked and
has not bound yet, so each lane draws from its own slice
(``PILOTFISH_PORT_RANGE``, set for the worker by tests/conftest.py and
inherited by the meshes it starts).

A test names the values it uses in a serial run; these helpers turn them into
its lane's: lane 0 (and a run without xdist) keeps them unchanged, lane N
appends N to a bridge name and flips bit ``16 * N`` of an address's third
octet. Every /24 the suite uses today lies in one 16-block per network
(198.18.240-250, 198.19.240-250, 127.x.0 and 127.79.242), so lanes never
overlap, and a test's addresses keep the same shape (``.1`` is still the
bridge, ``.250`` still high in the range).
"""

from __future__ import annotations

import ipaddress
import os

__all__ = ["LANE", "LANES", "lane_address", "lane_bridge", "lane_cidr", "lane_port_range"]


def _lane() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return int(worker[2:])
    return 0


LANE = _lane()
# How many lanes run (1 without xdist).
LANES = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or "1"))
# Bits of the third octet a lane may flip (16, 32, ... 240): at most 15 lanes.
_MAX_LANE = 15


def lane_bridge(base: str) -> str:
    """The bridge called ``base`` in a serial run, in this lane.

    Bridge names hold no ``-``, so ``<bridge>-`` netns prefixes of two lanes
    never prefix one another (``pfe2c-`` vs ``pfe2c1-``).
    """
    return base if LANE == 0 else f"{base}{LANE}"


def lane_address(address: str) -> str:
    """``address`` (an IPv4 address) in this lane: its third octet XOR ``16 * LANE``."""
    if LANE > _MAX_LANE:
        raise ValueError(f"lane {LANE}: at most {_MAX_LANE + 1} lanes have ranges of their own")
    packed = bytearray(ipaddress.IPv4Address(address).packed)
    packed[2] ^= LANE << 4
    return str(ipaddress.IPv4Address(bytes(packed)))


def lane_cidr(cidr: str) -> str:
    """``cidr`` (a /24 or longer) in this lane, as ``lane_address`` moves its addresses."""
    net = ipaddress.IPv4Network(cidr)
    if net.prefixlen < 24:
        raise ValueError(f"{cidr}: lanes move /24s (or longer), not wider ranges")
    return f"{lane_address(str(net.network_address))}/{net.prefixlen}"


def lane_port_range(low: int, top: int) -> str | None:
    """This lane's slice of ports ``[low, top)`` as ``LOW-HIGH``; None with one lane."""
    if LANES <= 1:
        return None
    width = (top - low) // LANES
    start = low + LANE * width
    return f"{start}-{start + width - 1}"
