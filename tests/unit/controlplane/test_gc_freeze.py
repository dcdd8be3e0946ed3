"""Freezing the garbage collector is the standalone control plane's decision only."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from click.testing import CliRunner

from pilotfish.cli import control_plane as cli_control_plane
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store import MemoryStore


async def test_embedded_control_plane_leaves_gc_alone() -> None:
    gc.unfreeze()
    cp = ControlPlane(ControlPlaneSettings(xds_port=0, http_port=0), store=MemoryStore())
    await cp.start()
    try:
        assert gc.get_freeze_count() == 0
    finally:
        await cp.close()


async def test_freeze_gc_setting_freezes_at_start() -> None:
    gc.unfreeze()
    settings = ControlPlaneSettings(xds_port=0, http_port=0, freeze_gc=True)
    cp = ControlPlane(settings, store=MemoryStore())
    try:
        await cp.start()
        assert gc.get_freeze_count() > 0
    finally:
        await cp.close()
        gc.unfreeze()


def test_standalone_command_turns_freezing_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[ControlPlaneSettings] = []

    async def fake_serve(settings: ControlPlaneSettings) -> None:
        seen.append(settings)

    monkeypatch.setattr(cli_control_plane, "_serve", fake_serve)
    result = CliRunner().invoke(cli_control_plane.control_plane, ["--config", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [s.freeze_gc for s in seen] == [True]
    assert ControlPlaneSettings().freeze_gc is False
