"""How test modules share code."""

from __future__ import annotations

from pathlib import Path


def test_no_test_module_imports_from_a_conftest() -> None:
    """``from conftest import`` binds to whichever conftest pytest imported first
    under that name, so it breaks with collection order; shared helpers live in
    kits (``tests/e2e/e2ekit.py`` and the like)."""
    tests = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(tests))
        for path in sorted(tests.rglob("*.py"))
        if path != Path(__file__).resolve()
        and any(
            line.startswith(("from conftest import", "import conftest"))
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert offenders == []
