"""Helpers for the dashboard browser tests: a headless Chromium page and screenshots.

The browser is Debian's Chromium driven by Playwright; Playwright never downloads
a browser of its own here (``executable_path`` points at the system one).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (make system-deps installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="pip playwright is not installed")


@contextmanager
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Chromium refuses to run as root with its sandbox; tests only.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            yield page
        finally:
            browser.close()


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Save a screenshot under the test's tmp dir and, if set, $PILOTFISH_ARTIFACTS."""
    out = tmp_path / "screenshots"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    artifacts = os.environ.get("PILOTFISH_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / path.name)
    return path
