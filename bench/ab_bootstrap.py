"""How sure the telemetry A/B is of its latency ratio: a two-level bootstrap.

Theory of operation: the A/B's rounds each measure ``direct`` and every mesh
once, one after the other; a mesh's *added latency* in a round is its
percentile minus ``direct``'s. Two things make the ratio
``added(variant) / added(baseline)`` uncertain: the machine changes from
round to round (the large part on a shared machine), and each percentile is
taken from a few thousand requests. A replicate here redoes both at random:

- it draws as many rounds as were run, with replacement, keeping each round's
  targets together (they ran back to back, so they share its conditions);
- within each drawn round it redraws each target's percentile from that
  target's own requests: the p-th percentile of a resample of ``n`` requests is
  the order statistic whose rank is Binomial(n, p), taken here through its
  normal approximation (n is thousands), which is what resampling every request
  would give without materialising the resamples;
- the same redrawn ``direct`` is subtracted from both meshes of a round, as in
  the measurement itself.

Each replicate yields the ratio of the median added latencies (the headline)
and the median of the per-round ratios; the interval is the central
``confidence`` share of the replicates, and ``share_within`` is the share of
replicates at or under the target. A fixed seed makes a summary reproducible
from the same samples.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.paced_wrk import Histogram

__all__ = ["bootstrap_ratio"]


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of ascending values."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _interval(values: list[float], confidence: float, target: float) -> dict[str, float]:
    values.sort()
    tail = (1 - confidence) / 2
    return {
        "low": round(_quantile(values, tail), 3),
        "high": round(_quantile(values, 1 - tail), 3),
        "share_within": round(sum(v <= target for v in values) / len(values), 3),
    }


def bootstrap_ratio(
    rounds: Sequence[Mapping[str, Histogram]],
    variant: str,
    baseline: str,
    pct: float,
    target: float,
    replicates: int = 2000,
    confidence: float = 0.95,
    seed: int = 10,
) -> dict[str, Any]:
    """Confidence intervals of ``added(variant) / added(baseline)`` at percentile ``pct``.

    ``rounds`` holds, per round, the latency histogram of ``direct``, ``variant``
    and ``baseline``. Replicates whose baseline added latency is not positive
    have no ratio and are left out (``replicates`` says how many counted).
    """
    if not rounds:
        raise ValueError("no rounds")
    rng = random.Random(seed)
    q = pct / 100

    def redraw(h: Histogram) -> float:
        n = h.count
        rank = n * q + rng.gauss(0.0, 1.0) * math.sqrt(n * q * (1 - q))
        return float(h.at_rank(math.ceil(rank)))

    of_medians: list[float] = []
    of_rounds: list[float] = []
    for _ in range(replicates):
        on: list[float] = []
        off: list[float] = []
        ratios: list[float] = []
        for _round in range(len(rounds)):
            drawn = rounds[rng.randrange(len(rounds))]
            base = redraw(drawn["direct"])
            a, b = redraw(drawn[variant]) - base, redraw(drawn[baseline]) - base
            on.append(a)
            off.append(b)
            if b > 0:
                ratios.append(a / b)
        med_off = statistics.median(off)
        if med_off > 0:
            of_medians.append(statistics.median(on) / med_off)
        if ratios:
            of_rounds.append(statistics.median(ratios))
    out: dict[str, Any] = {"confidence": confidence, "replicates": len(of_medians)}
    if of_medians:
        out["ratio_of_medians"] = _interval(of_medians, confidence, target)
    if of_rounds:
        out["median_ratio"] = _interval(of_rounds, confidence, target)
    return out
