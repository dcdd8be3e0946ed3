"""Golden files of the xDS build stage: IR in, Envoy protos out.

``tests/testdata/build/in/<case>.ir.yaml`` (a ``ProxyConfig`` written as IR
YAML, loaded with ``pilotfish.ir.load``) -> ``out/<case>.{cds,eds,lds,rds,sds}.yaml``,
as Envoy Gateway's ``internal/xds/translator/testdata`` does (an output is
written only for the kinds the case has). ``sample`` is the
Python sample configuration (``build_samples``) dumped: it is rewritten with the
outputs. ``pytest --update-golden`` rewrites the outputs and drops stale ones;
review their diffs like code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from build_samples import make_sample_config
from google.protobuf.message import Message

from golden import assert_golden, remove_stale
from pilotfish.ir import ProxyConfig
from pilotfish.ir.load import load_proxy_config
from pilotfish.xds.build import build_all
from pilotfish.xds.types import TYPE_SHORT_NAMES

GOLDEN_DIR = Path(__file__).parents[3] / "testdata" / "build"
IN_DIR = GOLDEN_DIR / "in"
OUT_DIR = GOLDEN_DIR / "out"
SUFFIX = ".ir.yaml"

CASES = sorted(p.name[: -len(SUFFIX)] for p in IN_DIR.glob(f"*{SUFFIX}"))


def _load(case: str) -> ProxyConfig:
    return load_proxy_config(yaml.safe_load((IN_DIR / f"{case}{SUFFIX}").read_text("utf-8")))


def _outputs(case: str) -> dict[Path, list[Message]]:
    return {
        OUT_DIR / f"{case}.{TYPE_SHORT_NAMES[type_url].lower()}.yaml": messages
        for type_url, messages in build_all(_load(case)).items()
        if messages
    }


def test_there_are_cases() -> None:
    assert {"sample", "listeners", "routes", "clusters-tls", "endpoints"} <= set(CASES)


def test_sample_input_is_the_python_sample(update_golden: bool) -> None:
    assert_golden(IN_DIR / f"sample{SUFFIX}", make_sample_config(), update_golden)


@pytest.mark.parametrize("case", CASES)
def test_build_golden(case: str, update_golden: bool) -> None:
    for path, messages in _outputs(case).items():
        assert_golden(path, messages, update_golden)


def test_no_stale_goldens(update_golden: bool) -> None:
    remove_stale(OUT_DIR, [path for case in CASES for path in _outputs(case)], update_golden)
