"""The demo's tour applies its files as ``pilotfish apply`` would: judged, then together."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest

from pilotfish.api.loader import load_file
from pilotfish.api.resource import ResourceKey
from pilotfish.cli.demo import apply_files
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store import MemoryStore

BOOKINFO = Path(__file__).resolve().parents[3] / "samples" / "bookinfo"
NET = BOOKINFO / "networking"


def _runtime() -> Any:
    """What ``apply_files`` reads of a running mesh: its control plane's store and settings."""
    served = [*load_file(BOOKINFO / "bookinfo.yaml").resources]
    served += load_file(NET / "bookinfo-gateway.yaml").resources
    cp = SimpleNamespace(store=MemoryStore(served), settings=ControlPlaneSettings())
    return SimpleNamespace(cp=cp)


def test_the_tours_files_are_accepted_in_its_order() -> None:
    runtime = _runtime()
    revision = runtime.cp.store.revision
    apply_files(runtime, NET / "destination-rule-all.yaml", NET / "virtual-service-all-v1.yaml")
    assert runtime.cp.store.revision == revision + 1  # one change for both files
    apply_files(runtime, NET / "virtual-service-reviews-50-v3.yaml")
    apply_files(runtime, NET / "virtual-service-reviews-test-v2.yaml")
    reviews = runtime.cp.store.get(ResourceKey("VirtualService", "default", "reviews"))
    assert reviews is not None and reviews.source.file.endswith("reviews-test-v2.yaml")


def test_a_route_without_its_subsets_is_refused_and_nothing_written() -> None:
    runtime = _runtime()
    before = runtime.cp.store.revision
    with pytest.raises(click.ClickException, match="IST0101"):
        apply_files(runtime, NET / "virtual-service-all-v1.yaml")
    assert runtime.cp.store.revision == before
    assert runtime.cp.store.get(ResourceKey("VirtualService", "default", "reviews")) is None
