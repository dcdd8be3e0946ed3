"""Golden files of the sample configuration: its IR dump and every built resource.

``pytest --update-golden`` rewrites them; review their diffs like code.
"""

from __future__ import annotations

from pathlib import Path

from build_samples import make_sample_config

from golden import assert_golden, remove_stale
from pilotfish.xds.build import build_all
from pilotfish.xds.types import TYPE_SHORT_NAMES

GOLDEN_DIR = Path(__file__).parents[2] / "testdata" / "build"


def test_sample_goldens(update_golden: bool) -> None:
    config = make_sample_config()
    produced = {GOLDEN_DIR / "sample.ir.yaml"}
    assert_golden(GOLDEN_DIR / "sample.ir.yaml", config, update_golden)
    for type_url, messages in build_all(config).items():
        path = GOLDEN_DIR / f"sample.{TYPE_SHORT_NAMES[type_url].lower()}.yaml"
        produced.add(path)
        assert_golden(path, messages, update_golden)
    remove_stale(GOLDEN_DIR, produced, update_golden)
