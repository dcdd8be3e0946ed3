"""Snapshots for the explain tests, from the translation cases' YAML or inline text."""

from __future__ import annotations

from pathlib import Path

from pilotfish.api.loader import load_text
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot

__all__ = ["EXPLICIT", "REDIRECT", "case_snapshot", "snapshot_of"]

CASES = Path(__file__).parents[2] / "testdata" / "translate" / "in"

# The translation goldens' sidecars (tests/unit/translate/translate_cases.py).
REDIRECT = ProxyView(
    "sidecar",
    "default",
    labels=(("app", "reviews"), ("version", "v1")),
    interception="REDIRECT",
    bind_ip="0.0.0.0",
)
EXPLICIT = ProxyView(
    "sidecar", "default", labels=(("app", "productpage"),), interception="NONE", bind_ip="127.0.0.5"
)


def snapshot_of(text: str, name: str = "inline.yaml") -> Snapshot:
    result = load_text(text, name)
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_snapshot(result.resources, 1)


def case_snapshot(case: str) -> Snapshot:
    return snapshot_of((CASES / f"{case}.yaml").read_text(encoding="utf-8"), f"{case}.yaml")
