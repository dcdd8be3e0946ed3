"""Pilotfish benchmarks: bounded, loopback-only measurements that print a table and write JSON.

Benchmarks are not tests: they never fail because something was slow. Run them with
``python -m bench.run [--quick] [--only NAME]`` (``make bench`` / ``make bench-quick``).
"""

from __future__ import annotations

__all__: list[str] = []
