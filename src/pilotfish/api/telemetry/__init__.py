"""Schemas of ``telemetry.istio.io`` resources, with Istio's field names."""

from __future__ import annotations

__all__: list[str] = []
