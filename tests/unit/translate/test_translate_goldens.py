"""Golden files of both translation stages, one set per input case.

``tests/testdata/translate/in/<case>.yaml`` -> ``out/<case>.ir.yaml`` (stage 1,
the whole IR of every proxy in ``PROXIES``, from ``translate.compose``) and
``out/<case>.{lds,rds,cds,eds,sds}.yaml`` (stage 2, the Envoy protos; SDS only
for cases with secrets). Run
``pytest --update-golden`` to rewrite them and drop stale ones; review the
diffs like code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from translate_cases import (
    OUT_DIR,
    STAGE2_KINDS,
    build_case,
    case_names,
    case_proxies,
    translate_case,
)

from golden import assert_golden, remove_stale

CASES = case_names()


def _kinds(case: str) -> list[str]:
    """The stage-2 golden kinds of a case: SDS only when some proxy gets secrets."""
    secrets = any(c.secrets for c in translate_case(case).proxies.values())
    return [kind for kind in STAGE2_KINDS if kind != "sds" or secrets]


def _outputs(case: str) -> list[Path]:
    return [OUT_DIR / f"{case}.{kind}.yaml" for kind in ("ir", *_kinds(case))]


def test_there_are_cases() -> None:
    assert len(CASES) >= 8, CASES


@pytest.mark.parametrize("case", CASES)
def test_translate_golden(case: str, update_golden: bool) -> None:
    translated = translate_case(case)
    assert list(translated.proxies) == case_proxies(case)
    assert_golden(OUT_DIR / f"{case}.ir.yaml", {"proxies": translated.proxies}, update_golden)
    built = build_case(translated)
    for kind in _kinds(case):
        data = {proxy: parts[kind] for proxy, parts in built.proxies.items()}
        assert_golden(OUT_DIR / f"{case}.{kind}.yaml", data, update_golden)


def test_translation_is_deterministic() -> None:
    """Two translations of the same input give equal IR (the goldens rely on it)."""
    for case in CASES:
        assert translate_case(case) == translate_case(case), case


def test_no_stale_goldens(update_golden: bool) -> None:
    produced = [path for case in CASES for path in _outputs(case)]
    remove_stale(OUT_DIR, produced, update_golden)
