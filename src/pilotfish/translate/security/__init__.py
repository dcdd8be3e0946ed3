"""Translation of the ``security.istio.io`` kinds into IR security settings."""

from __future__ import annotations

__all__: list[str] = []
