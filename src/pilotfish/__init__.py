"""Pilotfish: a light service mesh.

A Python control plane turns Istio-compatible configuration into Envoy
configuration and pushes it over xDS to real Envoy proxies.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
