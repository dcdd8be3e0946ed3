"""Fuzzing the configuration entry points: ``python -m bench.fuzz_inputs [--cases N]``.

Generates ``N`` (default 10 000) mutated documents from the repository's
samples and test data (``bench.fuzz_corpus``, seeded: the same cases every
run) and feeds every one through ``pilotfish analyze``'s path and through a
real control plane's config API over HTTP (``bench.fuzz_harness``). Prints a
table (accepted, rejected by reason, crashes, invariant violations, slowest
case, largest peak-RSS growth of one case) and writes
``bench/results/fuzz_inputs.json`` (``fuzz_inputs_quick.json`` with
``--quick``, 1 000 cases; ``fuzz_inputs_custom.json`` with ``--cases``). The
exit status is 1 when there was any crash or violation. ``python -m
bench.run --only fuzz_inputs`` runs the same.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.fuzz_corpus import generate, load_seeds
from bench.fuzz_harness import run_analyze, run_api_sync
from bench.procstats import machine_info, utc_timestamp
from bench.report import write_result
from pilotfish.api.limits import DEFAULT_LIMITS
from pilotfish.cli.tables import print_table

__all__ = ["FULL", "QUICK", "FuzzParams", "failures", "fuzz_table", "main", "run_fuzz"]

_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class FuzzParams:
    cases: int
    seed: int = 0


FULL = FuzzParams(cases=10_000)
QUICK = FuzzParams(cases=1_000)


def run_fuzz(params: FuzzParams, log: Any = print) -> dict[str, Any]:
    """Both passes over the same cases; the numbers of each, and the limits in force."""
    seeds = load_seeds(_REPO)
    log(f"{len(seeds)} seed resources; generating {params.cases} cases (seed {params.seed})")
    cases = list(generate(seeds, params.cases, params.seed))
    with tempfile.TemporaryDirectory(prefix="pilotfish-fuzz-") as tmp:
        log("analyze pass")
        analyze = run_analyze(cases, Path(tmp))
        log("config API pass")
        api = run_api_sync(cases, Path(tmp) / "api")
    return {
        "seeds": len(seeds),
        "limits": {
            name: getattr(DEFAULT_LIMITS, name) for name in DEFAULT_LIMITS.__dataclass_fields__
        },
        "analyze": analyze.to_json(),
        "api": api.to_json(),
    }


def failures(tally: dict[str, Any]) -> int:
    """Crashes plus invariant violations of one pass's numbers."""
    return int(tally.get("crashes", 0)) + int(tally.get("violations", 0))


def fuzz_table(result: dict[str, Any]) -> Table:
    """Both passes side by side: outcomes, then time and memory."""
    numbers = result.get("results", {})
    params = result.get("parameters", {})
    passes = {name: numbers.get(name) or {} for name in ("analyze", "api")}
    table = Table(title=f"fuzzed inputs: {params.get('cases')} cases (seed {params.get('seed')})")
    table.add_column("outcome")
    table.add_column("analyze", justify="right")
    table.add_column("config API", justify="right")

    def row(label: str, key: str, fmt: str = "{}") -> None:
        cells = [fmt.format(p[key]) if p.get(key) is not None else "-" for p in passes.values()]
        table.add_row(label, *cells)

    row("cases", "cases")
    row("accepted", "accepted")
    row("rejected", "rejected_total")
    reasons = sorted({r for p in passes.values() for r in p.get("rejected", {})})
    for reason in reasons:
        counts = (str(p.get("rejected", {}).get(reason, 0)) for p in passes.values())
        table.add_row(f"  {reason}", *counts)
    row("skipped (URL beyond loopback)", "skipped")
    table.add_row(
        "crashes + violations",
        *(
            f"[red]{failures(p)}[/red]" if failures(p) else "[green]0[/green]"
            for p in passes.values()
        ),
    )
    row("slowest case", "max_seconds", "{:.3f} s")
    row("largest peak-RSS growth of one case", "max_rss_growth_mib", "{:.1f} MiB")
    row("peak RSS after the pass", "peak_rss_after_mib", "{:.0f} MiB")
    row("wall time", "wall_seconds", "{:.1f} s")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_inputs", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.cases} cases")
    parser.add_argument("--cases", type=int, help="number of cases")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    args = parser.parse_args(argv)
    params = QUICK if args.quick else FULL
    if args.cases is not None or args.seed:
        params = FuzzParams(cases=args.cases or params.cases, seed=args.seed)
    console = Console()
    numbers = run_fuzz(params, log=console.log)
    payload = {
        "benchmark": "fuzz_inputs",
        "quick": bool(args.quick),
        "timestamp": utc_timestamp(),
        "machine": machine_info(_REPO),
        "error": None,
        "parameters": {"cases": params.cases, "seed": params.seed},
        "results": numbers,
    }
    print_table(console, fuzz_table(payload))
    name = "fuzz_inputs_quick" if params == QUICK else "fuzz_inputs"
    if params not in (QUICK, FULL):
        name = "fuzz_inputs_custom"
    path = write_result(name, payload)
    console.print(f"wrote {path.relative_to(_REPO) if path.is_relative_to(_REPO) else path}")
    return 1 if any(failures(numbers[p]) for p in ("analyze", "api")) else 0


if __name__ == "__main__":
    raise SystemExit(main())
