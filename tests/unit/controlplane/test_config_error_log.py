"""A standing configuration error is logged once, not on every rebuild, and a
file broken again (its last good objects unchanged) is reported at once."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store import FileStore
from polling import apoll

_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
"""


def _write(path: Path, text: str) -> None:
    """Atomically, as editors save: a half-written file would be an error of its own."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def test_a_standing_error_is_logged_when_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "broken.yaml").write_text("kind: VirtualService\nspec: [\n")
    store = FileStore(tmp_path, poll_interval=0.02)
    cp = ControlPlane(ControlPlaneSettings(xds_port=0, http_port=0), store=store)
    caplog.set_level(logging.ERROR)
    await cp.start()
    try:

        def errors() -> list[str]:
            return [r.getMessage() for r in caplog.records if "config error" in r.getMessage()]

        def built(name: str) -> bool:
            return any(r.name == name for r in cp.generator.snapshot.resources)

        def errors_gauge() -> float | None:
            return cp.registry.get_sample_value("pilotfish_config_errors")

        assert len(errors()) == 1 and "broken.yaml" in errors()[0]
        assert errors_gauge() == 1
        # Two unrelated changes: two rebuilds that still see the same error.
        for name in ("one", "two"):
            _write(tmp_path / f"{name}.yaml", _SERVICE.format(name=name))
            await apoll(lambda n=name: built(n), f"service {name} in the snapshot", 10)
        assert len(errors()) == 1
        # Fixed, then broken again: logged again.
        _write(tmp_path / "broken.yaml", _SERVICE.format(name="three"))
        await apoll(lambda: built("three"), "service three in the snapshot", 10)
        assert errors_gauge() == 0
        _write(tmp_path / "broken.yaml", "kind: VirtualService\nspec: [\n")
        await apoll(lambda: len(errors()) == 2, "the error logged again", 10)
        assert errors_gauge() == 1 and built("three")  # still serving the last good
    finally:
        await cp.close()
