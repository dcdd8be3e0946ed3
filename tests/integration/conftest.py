from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from meshkit import Mesh


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    config = tmp_path / "config"
    config.mkdir()
    m = Mesh(tmp_path, config)
    try:
        await m.start()
        yield m
    finally:
        await m.close()
