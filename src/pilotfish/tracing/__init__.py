"""The mesh's embedded trace store: Zipkin v2 spans in, Zipkin's query API out."""

from __future__ import annotations

from pilotfish.tracing.store import SpanStore, StoreLimits

__all__ = ["SpanStore", "StoreLimits"]
