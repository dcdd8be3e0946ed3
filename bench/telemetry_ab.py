"""What telemetry adds to the sidecars' latency, measured interleaved: ``telemetry_ab``.

Theory of operation: the ``dataplane`` benchmark runs telemetry on and off one
after the other, once each, and divides two small differences (each mesh minus
``direct``, about half a millisecond) taken minutes apart on a shared 2-core
machine. One such ratio moves by 0.2-0.4 between runs. This benchmark keeps
the noise visible and measures how sure it is instead:

- every *variant* (a mesh: control plane + client and server sidecar, as in
  ``dataplane.explicit_sidecars``, each on its own 127.x addresses and work
  directory) and the ``direct`` path run at the same time, idle but for the
  one under load;
- a *round* measures ``direct`` and each variant once, ``duration_s`` each, in
  an order rotated every round, so a slow spell of the machine lands on every
  variant in turn; many one-second rounds pair the targets more closely than a
  few long ones, and give the bootstrap more rounds to resample;
- the load is ``wrk`` on a fixed schedule (``bench.paced_wrk``): the same
  offered rate for every target whatever its latency, each request timed to
  the microsecond by a C client that adds little of its own;
- per round, each variant's added latency is its percentile minus ``direct``'s
  of the same round; the headline is the ratio of the median added latencies
  over the rounds, ``added(variant) / added(baseline)``, with the median of
  the per-round ratios beside it, each with a bootstrap confidence interval
  over rounds and requests (``bench.ab_bootstrap``);
- Envoy's CPU per request (both sidecars' utime+stime over the run, divided
  by the requests answered) is reported per variant: it is much less noisy
  than latency and says how much work telemetry adds;
- each Envoy's resident memory (``VmRSS``) is read after every round; the
  summary gives the median per proxy and what the variant adds over the
  baseline, against the +10 MiB target.

The latency verdict is on p50 (the issue's target: added latency with
telemetry at most 1.1x the added latency without it): ``met`` when the whole
confidence interval of the ratio of medians is at or under the target, ``not
met`` when it is all above, ``undecided`` otherwise; p90/p99 are reported
beside it, as is the spread (min-max over the rounds) of every number, so a
reader can see how noisy the machine was.

Variants are named config fragments added to the same ``echo`` config; the
default pair is ``on`` (the mesh's defaults) and ``off`` (a root-namespace
Telemetry disabling metrics, tracing and access logs). ``--variant
NAME=FILE.yaml`` (``bench.run``) adds more, e.g. a Telemetry turning off only
tracing, to attribute the cost.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.ab_bootstrap import bootstrap_ratio
from bench.controlplane_scale import BenchmarkError, pilotfish_executable
from bench.dataplane import (
    TELEMETRY_LATENCY_RATIO_TARGET,
    TELEMETRY_OFF,
    TELEMETRY_RSS_MIB_TARGET,
    _start_app,
    direct,
    explicit_sidecars,
)
from bench.dataplane_base import DataplaneParams, Rig, Target, http_get, wait_for
from bench.loadgen import PERCENTILES
from bench.paced_wrk import Histogram, find_debian_tool, run_paced
from bench.procstats import cpu_seconds, rss_mib

__all__ = [
    "FULL",
    "QUICK",
    "AbParams",
    "Variant",
    "ab_table",
    "round_order",
    "run_telemetry_ab",
    "summarize_rounds",
]


@dataclass(frozen=True, slots=True)
class Variant:
    """A mesh to measure: extra config files (name -> YAML) beside ``echo``'s, run by
    ``executable`` (empty: the benchmark's own ``pilotfish``)."""

    name: str
    files: tuple[tuple[str, str], ...] = ()
    executable: str = ""


@dataclass(frozen=True, slots=True)
class AbParams:
    """Rounds of ``duration_s`` per arrangement; ``variants`` maps a name to the
    extra config files (name -> YAML text) of its mesh; the first is the one
    compared, ``baseline`` the one it is compared against."""

    rounds: int
    duration_s: float
    warmup_s: float = 2.0
    rate: int = 1000
    connections: int = 4
    response_bytes: int = 1024
    baseline: str = "off"
    variants: tuple[Variant, ...] = (
        Variant("on"),
        Variant("off", (("telemetry-off.yaml", TELEMETRY_OFF),)),
    )
    ready_deadline_s: float = 60.0


BOOTSTRAP_PERCENTILES = (50, 90)
# Many one-second rounds: on this machine a round's ratio moves by +-0.3 whatever
# its length (4 s rounds were no steadier than 1 s ones), so the interval narrows
# with the number of rounds, and short rounds put the targets closer in time.
FULL = AbParams(rounds=80, duration_s=1)
QUICK = AbParams(rounds=24, duration_s=1)


def round_order(names: Sequence[str], round_index: int) -> list[str]:
    """``names`` rotated by the round number: each goes first once in len(names) rounds."""
    k = round_index % len(names)
    return [*names[k:], *names[:k]]


@dataclass(slots=True)
class _Run:
    latency_ms: dict[str, float]
    requests: int
    errors: int
    histogram: Histogram
    envoy_cpu_us_per_request: float | None = None
    rss_mib: dict[str, float | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Everything but the histogram (thousands of values per run)."""
        return {
            "latency_ms": self.latency_ms,
            "requests": self.requests,
            "errors": self.errors,
            "envoy_cpu_us_per_request": self.envoy_cpu_us_per_request,
            "rss_mib": self.rss_mib,
        }


def _load(wrk: str, target: Target, params: AbParams, duration_s: float) -> _Run:
    """One paced wrk run; raises RuntimeError when wrk fails."""
    run = run_paced(wrk, target.url, target.headers, params.rate, params.connections, duration_s)
    h = run.histogram
    latency = {f"p{pct}": h.percentile_us(pct) / 1000 for pct in PERCENTILES}
    latency["mean"] = h.mean_us() / 1000
    return _Run(latency, run.requests, sum(run.errors.values()), h)


def _measure(wrk: str, target: Target, params: AbParams) -> _Run:
    before = [cpu_seconds(pid) for _role, pid in target.proxies]
    run = _load(wrk, target, params, params.duration_s)
    after = [cpu_seconds(pid) for _role, pid in target.proxies]
    if target.proxies:
        if any(a is None or b is None for a, b in zip(before, after, strict=True)):
            raise RuntimeError(f"an Envoy of {target.url} exited during the run")
        cpu = sum((b or 0.0) - (a or 0.0) for a, b in zip(before, after, strict=True))
        run.envoy_cpu_us_per_request = cpu / run.requests * 1e6
        run.rss_mib = {role: rss_mib(pid) for role, pid in target.proxies}
    return run


def _added(run: _Run, base: _Run) -> dict[str, float]:
    return {k: run.latency_ms[k] - base.latency_ms[k] for k in run.latency_ms}


def _spread(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def _latency_summary(
    rounds: Sequence[dict[str, dict[str, Any]]], variant: str, baseline: str, key: str
) -> dict[str, Any]:
    ratios = []
    on, off = [], []
    for r in rounds:
        a, b = r[variant]["added_ms"][key], r[baseline]["added_ms"][key]
        on.append(a)
        off.append(b)
        if b > 0:
            ratios.append(a / b)
    med_on, med_off = statistics.median(on), statistics.median(off)
    return {
        "median_ratio": round(statistics.median(ratios), 3) if ratios else None,
        "min_ratio": round(min(ratios), 3) if ratios else None,
        "max_ratio": round(max(ratios), 3) if ratios else None,
        "ratio_of_medians": round(med_on / med_off, 3) if med_off > 0 else None,
        "median_added_ms": {variant: round(med_on, 4), baseline: round(med_off, 4)},
        "added_ms": {variant: _spread(on), baseline: _spread(off)},
    }


def _rss_summary(
    rounds: Sequence[dict[str, dict[str, Any]]], variant: str, baseline: str
) -> dict[str, Any]:
    """Median RSS per proxy of both meshes over the rounds, and the difference."""
    medians: dict[str, dict[str, float | None]] = {}
    for name in (variant, baseline):
        roles = {role for r in rounds for role in (r[name].get("rss_mib") or {})}
        medians[name] = {}
        for role in sorted(roles):
            values = [v for r in rounds if (v := (r[name].get("rss_mib") or {}).get(role))]
            medians[name][role] = round(statistics.median(values), 2) if values else None
    extra: dict[str, float | None] = {}
    for role, on in medians[variant].items():
        off = medians[baseline].get(role)
        extra[role] = None if on is None or off is None else round(on - off, 2)
    return {"median_mib": medians, "extra_mib": extra}


def _verdict(interval: dict[str, float] | None, target: float) -> str | None:
    if interval is None:
        return None
    if interval["high"] <= target:
        return "met"
    return "not met" if interval["low"] > target else "undecided"


def summarize_rounds(
    rounds: Sequence[dict[str, dict[str, Any]]],
    variant: str,
    baseline: str,
    histograms: Sequence[Mapping[str, Histogram]] = (),
) -> dict[str, Any]:
    """Per percentile: the ratio of the median added latencies over the rounds
    (``added(variant) / added(baseline)``), the median, minimum and maximum of the
    rounds' ratios, the added latencies' spread and, given the rounds' latency
    ``histograms``, bootstrap intervals of both ratios for p50 and p90; Envoy CPU per
    request and RSS per proxy; the verdicts."""
    target = TELEMETRY_LATENCY_RATIO_TARGET
    out: dict[str, Any] = {
        key: _latency_summary(rounds, variant, baseline, key)
        for key in (*(f"p{p}" for p in PERCENTILES), "mean")
    }
    if histograms:
        for pct in BOOTSTRAP_PERCENTILES:
            out[f"p{pct}"]["bootstrap"] = bootstrap_ratio(
                histograms, variant, baseline, pct, target
            )
    cpu_on = [r[variant]["envoy_cpu_us_per_request"] for r in rounds]
    cpu_off = [r[baseline]["envoy_cpu_us_per_request"] for r in rounds]
    out["envoy_cpu_us_per_request"] = {
        variant: round(statistics.median(cpu_on), 1),
        baseline: round(statistics.median(cpu_off), 1),
    }
    out["envoy_cpu_us_per_request_spread"] = {
        variant: _spread(cpu_on, 1),
        baseline: _spread(cpu_off, 1),
    }
    med_off = statistics.median(cpu_off)
    out["envoy_cpu_ratio"] = round(statistics.median(cpu_on) / med_off, 3) if med_off else None
    out["rss"] = _rss_summary(rounds, variant, baseline)
    ratio = out["p50"]["ratio_of_medians"]
    extras = list(out["rss"]["extra_mib"].values())
    out["latency_met"] = ratio is not None and ratio <= target
    out["latency_verdict"] = _verdict(
        (out["p50"].get("bootstrap") or {}).get("ratio_of_medians"), target
    )
    out["rss_met"] = bool(extras) and all(
        e is not None and e <= TELEMETRY_RSS_MIB_TARGET for e in extras
    )
    out["met"] = out["latency_met"] and out["rss_met"]
    out["targets"] = {
        "p50_added_latency_ratio": TELEMETRY_LATENCY_RATIO_TARGET,
        "extra_rss_mib": TELEMETRY_RSS_MIB_TARGET,
    }
    return out


def _probe(target: Target, size: int, deadline_s: float) -> None:
    def ok() -> bool:
        status, body = http_get(target.url, target.headers)
        return status == 200 and len(body) == size

    wait_for(f"200 with {size} bytes from {target.url}", ok, deadline_s)


def run_telemetry_ab(
    params: AbParams,
    log: Callable[[str], None] = print,
    executable: Path | None = None,
) -> dict[str, Any]:
    """Start every variant, run the rounds, summarize (JSON-ready; ``error`` on failure)."""
    exe = executable or pilotfish_executable()
    out: dict[str, Any] = {"parameters": asdict(params) | {"executable": str(exe)}, "rounds": []}
    wrk = find_debian_tool("wrk", "wrk", install=True, log=log)
    if wrk is None:
        out["error"] = "wrk is not installed and could not be installed"
        return out
    out["parameters"]["load_generator"] = {"name": "wrk", "path": wrk, "paced": True}
    histograms: list[dict[str, Histogram]] = []
    with tempfile.TemporaryDirectory(prefix="pilotfish-telemetry-ab-") as tmp:
        try:
            _rounds(params, exe, wrk, Path(tmp), out, histograms, log)
        except (BenchmarkError, RuntimeError) as exc:
            out["error"] = str(exc)
    names = [v.name for v in params.variants]
    if out["rounds"] and "error" not in out:
        log("bootstrapping the ratios")
        out["summary"] = {
            name: summarize_rounds(out["rounds"], name, params.baseline, histograms)
            for name in names
            if name != params.baseline
        }
    return out


def _rounds(
    params: AbParams,
    exe: Path,
    wrk: str,
    work: Path,
    out: dict[str, Any],
    histograms: list[dict[str, Histogram]],
    log: Callable[[str], None],
) -> None:
    dp = DataplaneParams(
        rate=params.rate,
        connections=params.connections,
        response_bytes=params.response_bytes,
        duration_s=params.duration_s,
        warmup_s=params.warmup_s,
        ready_deadline_s=params.ready_deadline_s,
    )
    with contextlib.ExitStack() as stack:
        app_port, _app_pid = _start_app(stack, work, params.ready_deadline_s)
        rig = Rig(exe=exe, work=work, params=dp, app_port=app_port, log=log)
        targets: dict[str, Target] = {"direct": direct(rig, stack)}
        for index, v in enumerate(params.variants):
            log(f"{v.name}: starting its mesh")
            start = partial(explicit_sidecars, mesh=v.name, index=index, extra_files=dict(v.files))
            own = replace(rig, exe=Path(v.executable)) if v.executable else rig
            targets[v.name] = start(own, stack)
        for target in targets.values():
            _probe(target, params.response_bytes, params.ready_deadline_s)
            _load(wrk, target, params, params.warmup_s)  # warm-up, discarded
        names = list(targets)
        for i in range(params.rounds):
            runs = {name: _measure(wrk, targets[name], params) for name in round_order(names, i)}
            base = runs["direct"]
            entry: dict[str, dict[str, Any]] = {}
            for name, run in runs.items():
                entry[name] = run.as_json() | {"added_ms": _added(run, base)}
            out["rounds"].append(entry)
            histograms.append({name: run.histogram for name, run in runs.items()})
            log(
                f"round {i + 1}/{params.rounds}: "
                + ", ".join(
                    f"{n} p50 {r.latency_ms['p50']:.3f} ms"
                    + (f" ({r.envoy_cpu_us_per_request:.0f} us cpu/req)" if n != "direct" else "")
                    for n, r in runs.items()
                )
            )
            time.sleep(0.2)


def _spread_text(spread: dict[str, float] | None, fmt: str = ".3f") -> str:
    if not spread:
        return "-"
    return f"{spread['median']:{fmt}} [{spread['min']:{fmt}}-{spread['max']:{fmt}}]"


def _ratio_text(summary: dict[str, Any], key: str) -> str:
    """A ratio with its bootstrap interval, when there is one."""
    if summary.get(key) is None:
        return "-"
    text = f"{summary[key]:.2f}x"
    interval = (summary.get("bootstrap") or {}).get(key)
    return f"{text} \\[{interval['low']:.2f}-{interval['high']:.2f}]" if interval else text


def _rounds_text(summary: dict[str, Any]) -> str:
    if summary.get("median_ratio") is None:
        return "-"
    spread = f"({summary['min_ratio']:.2f}-{summary['max_ratio']:.2f})"
    return f"{_ratio_text(summary, 'median_ratio')} {spread}"


def _mark(met: bool) -> str:
    return "[green]met[/green]" if met else "[red]not met[/red]"


def _verdict_text(summary: dict[str, Any]) -> str:
    verdict = summary.get("latency_verdict")
    if verdict is None:
        return _mark(bool(summary.get("latency_met")))
    colour = {"met": "green", "not met": "red"}.get(verdict, "yellow")
    share = ((summary["p50"].get("bootstrap") or {}).get("ratio_of_medians") or {}).get(
        "share_within"
    )
    return f"[{colour}]{verdict}[/{colour}]" + ("" if share is None else f" (P={share:.2f})")


def ab_table(result: dict[str, Any]) -> Table:
    """The interleaved rounds as a table: per variant the added latency over
    ``direct`` (median over the rounds, [min-max]), Envoy CPU per request and
    RSS per proxy; then the ratio to the baseline and the verdicts."""
    params = result.get("parameters") or {}
    numbers = result.get("results") or {}
    baseline = params.get("baseline", "off")
    title = (
        f"telemetry A/B: {params.get('rounds')} interleaved rounds x "
        f"{params.get('duration_s')} s, {params.get('rate')} rps, "
        f"{params.get('connections')} conns, {params.get('response_bytes')} B"
    )
    table = Table(
        title=title,
        caption="added = percentile through the mesh - percentile direct, same round; "
        "ratio of the median added latencies \\[95 % bootstrap interval]; below it the median "
        "of the rounds' ratios \\[interval] (min-max); P = share of replicates within target",
    )
    table.add_column("", no_wrap=True)
    for column in ("p50 ms", "p90 ms", "p99 ms", "Envoy CPU µs/req", "RSS MiB client", "server"):
        table.add_column(column, justify="right")
    for name, summary in (numbers.get("summary") or {}).items():
        for side in (name, baseline):
            rss = (summary.get("rss") or {}).get("median_mib", {}).get(side) or {}
            table.add_row(
                f"added, {side}",
                *(_spread_text(summary[f"p{p}"]["added_ms"].get(side)) for p in PERCENTILES),
                _spread_text(summary["envoy_cpu_us_per_request_spread"].get(side), ".1f"),
                *("-" if rss.get(r) is None else f"{rss[r]:.1f}" for r in ("client", "server")),
            )
        extra = (summary.get("rss") or {}).get("extra_mib") or {}
        cpu_ratio = summary.get("envoy_cpu_ratio")
        table.add_row(
            f"[bold]{name} / {baseline}[/bold]",
            *(_ratio_text(summary[f"p{p}"], "ratio_of_medians") for p in PERCENTILES),
            "-" if cpu_ratio is None else f"{cpu_ratio:.2f}x",
            *("-" if extra.get(r) is None else f"{extra[r]:+.1f}" for r in ("client", "server")),
        )
        table.add_row(
            "  median of rounds",
            *(_rounds_text(summary[f"p{p}"]) for p in PERCENTILES),
            "",
            "",
            "",
        )
        targets = summary.get("targets") or {}
        table.add_row(
            f"[bold]target[/bold] {name}",
            f"<= {targets.get('p50_added_latency_ratio')}x: {_verdict_text(summary)}",
            "",
            "",
            "",
            f"<= +{targets.get('extra_rss_mib'):g}: {_mark(summary.get('rss_met'))}",
            "",
        )
    if result.get("error"):
        table.add_row("[red]error[/red]")
        table.caption = f"[red]{result['error']}[/red]"
    return table


def _main(argv: Sequence[str]) -> int:
    """``python -m bench.telemetry_ab [--quick] [--rounds N] [--variant NAME=FILE]``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.telemetry_ab")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--connections", type=int)
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=[FILE.yaml][@PILOTFISH]"
    )
    parser.add_argument("--only-variants", action="store_true", help="drop the on/off pair")
    parser.add_argument("--baseline")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    params = QUICK if args.quick else FULL
    variants = [] if args.only_variants else list(params.variants)
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        path, _, exe = rest.partition("@")
        files = () if not path else (("variant.yaml", Path(path).read_text()),)
        variants.append(Variant(name, files, exe))
    overrides: dict[str, Any] = {"variants": tuple(variants)}
    if args.rounds:
        overrides["rounds"] = args.rounds
    if args.duration:
        overrides["duration_s"] = args.duration
    if args.connections:
        overrides["connections"] = args.connections
    if args.baseline:
        overrides["baseline"] = args.baseline
    params = replace(params, **overrides)
    result = run_telemetry_ab(params, log=lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    print(json.dumps(result.get("summary", result.get("error")), indent=1))
    table_input = {"parameters": result["parameters"], "results": result}
    if "error" in result:
        table_input["error"] = result["error"]
    Console(stderr=True, width=200).print(ab_table(table_input))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
