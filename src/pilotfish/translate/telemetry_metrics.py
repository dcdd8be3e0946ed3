"""Istio's standard metrics on every connection manager and TCP proxy.

Metrics are on by default, as in Istio. A sidecar reports requests it receives
as ``destination`` and requests its app sends as ``source``; a gateway only
sends, so it reports ``source`` (as Istio's gateways do). The Telemetry API
may later narrow what each one emits (``ir.Metrics.disabled``, overrides);
a value already set is kept.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from pilotfish.ir import HttpConnectionManager, Metrics, TcpProxy
from pilotfish.ir.telemetry import Reporter

__all__ = ["with_metrics"]

F = TypeVar("F", HttpConnectionManager, TcpProxy)


def with_metrics(flt: F, reporter: Reporter) -> F:
    """``flt`` reporting Istio's metrics as ``reporter`` (unchanged if it already reports)."""
    if flt.metrics is not None:
        return flt
    return replace(flt, metrics=Metrics(reporter=reporter))
