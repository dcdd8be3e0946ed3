"""Schemas of core Kubernetes (``v1``) resources."""

from __future__ import annotations

__all__: list[str] = []
