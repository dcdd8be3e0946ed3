"""10 000 seeded mutations of the samples and test data through ``analyze`` (a
quarter of them also go through a real control plane's config API over HTTP:
``test_fuzz_inputs_api``, a module of its own so the two halves can run in
parallel lanes).

Asserted per case (``bench.fuzz_harness``): no exception, no 5xx, JSON error
bodies, an accepted object always passes its validator, a rejected write leaves
the store's revision, objects and files exactly as they were; and bounds on
time and on the growth of peak RSS. ``python -m bench.fuzz_inputs`` runs all
10 000 through both and prints the counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.fuzz_corpus import FuzzCase, Seed, generate, load_seeds
from bench.fuzz_harness import Tally, run_analyze

CASES = 10_000
API_SHARE = 4  # every 4th case goes through the API too

#: Bounds per case in CPU seconds (the harness measures the process's CPU time, so
#: other load on a shared machine does not count), far above what a case costs
#: here (well under 1 s and 10 MiB)
#: and far below what one unbounded input cost before the parse limits (an alias
#: bomb: gigabytes, minutes).
MAX_SECONDS = 15.0
MAX_RSS_GROWTH_MIB = 100.0
#: Inputs refused by a limit must be refused at once: well under a second each.
MAX_LIMIT_SECONDS = 5.0


@pytest.fixture(scope="module")
def seeds() -> list[Seed]:
    return load_seeds()


@pytest.fixture(scope="module")
def cases(seeds: list[Seed]) -> list[FuzzCase]:
    return list(generate(seeds, CASES))


def _assert_clean(tally: Tally) -> None:
    assert tally.crashes == [], tally.crashes[:5]
    assert tally.violations == [], tally.violations[:5]
    assert tally.max_seconds < MAX_SECONDS, (tally.max_seconds, tally.slowest_case)
    growth = tally.max_growth
    assert growth is None or growth < MAX_RSS_GROWTH_MIB, tally.max_growth_mib
    for mutation in ("alias", "deep_nesting", "many_documents", "oversize"):
        assert tally.max_seconds_by_mutation.get(mutation, 0.0) < MAX_LIMIT_SECONDS, mutation


def test_generation_is_deterministic(seeds: list[Seed], cases: list[FuzzCase]) -> None:
    again = list(generate(seeds, 200))
    assert [c.body for c in again] == [c.body for c in cases[:200]]
    assert len(seeds) > 100
    assert {c.mutation for c in cases} >= {
        "delete_field", "type_swap", "huge_value", "deep_nesting", "bad_utf8", "alias",
        "truncate", "duplicate_key", "unknown_field", "many_documents", "oversize",
    }  # fmt: skip


def test_every_case_through_analyze(cases: list[FuzzCase], tmp_path: Path) -> None:
    tally = run_analyze(cases, tmp_path)
    _assert_clean(tally)
    assert tally.cases == CASES
    # Every class of refusal happened, and unchanged seeds were accepted.
    assert tally.by_mutation["unchanged"] == {"accepted": tally.by_mutation["unchanged"].total()}
    for reason in (
        "limit:alias_nodes", "limit:alias_chars", "limit:aliases", "limit:recursive_alias",
        "limit:depth", "limit:bytes", "limit:documents", "encoding", "syntax",
        "duplicate_key", "unknown_field", "validation",
    ):  # fmt: skip
        assert tally.rejected[reason] > 0, reason
    assert tally.accepted > 0
