"""A quarter of the fuzz cases of ``test_fuzz_inputs`` through a real control
plane's config API over HTTP (see that module for what is asserted per case).

A module of its own so that ``make test`` can run it in a lane beside the
``analyze`` half: each half takes about 40 s of CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.fuzz_corpus import FuzzCase, Seed, generate, load_seeds
from bench.fuzz_harness import run_api
from test_fuzz_inputs import API_SHARE, CASES, _assert_clean


@pytest.fixture(scope="module")
def cases() -> list[FuzzCase]:
    seeds: list[Seed] = load_seeds()
    return list(generate(seeds, CASES))


async def test_a_share_of_the_cases_through_the_config_api(
    cases: list[FuzzCase], tmp_path: Path
) -> None:
    share = cases[::API_SHARE]
    tally = await run_api(share, tmp_path)
    _assert_clean(tally)
    assert tally.cases + tally.skipped == len(share)
    assert tally.skipped < len(share) // 50
    assert set(tally.statuses) <= {200, 201, 400, 404, 409, 413}
    assert tally.statuses[413] > 0 and tally.statuses[400] > 0
    assert tally.accepted > 0
    for reason in ("limit:alias_nodes", "limit:depth", "limit:bytes", "encoding"):
        assert tally.rejected[reason] > 0, reason
