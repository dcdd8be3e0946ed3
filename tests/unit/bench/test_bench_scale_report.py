"""The scale benchmark's result shape and tables: variants, targets, the curve."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `bench` is a top-level package beside `src`, not installed
    sys.path.insert(0, str(ROOT))

from bench import controlplane_scale  # noqa: E402
from bench.report import scale_table  # noqa: E402
from bench.run import _scale_params  # noqa: E402

from pilotfish.cli.tables import print_table  # noqa: E402


def _run(full: float, vs: float, ep: float, rss: float, tls: str, protocol: str) -> dict:
    converged = {"converged": True, "acked": 10, "affected": 10}
    return {
        "protocol": protocol,
        "tls": tls,
        "full_push": {"converged": True, "complete": 10},
        "full_push_s": full,
        "vs_edit": {**converged, "convergence_s": vs, "first_response_s": vs / 2},
        "endpoint_change": {**converged, "convergence_s": ep, "first_response_s": ep / 2},
        "vs_edit_s": vs,
        "endpoint_change_s": ep,
        "peak_rss_mib": rss,
        "cp_peak_rss_mib": rss,
        "cpu_s": 1.0,
        "services": 1000,
        "proxies": 10,
    }


def test_targets_are_judged_on_the_headline_variant() -> None:
    headline = _run(2.5, 0.7, 0.2, 390, "mtls", "delta")
    checks = controlplane_scale._targets(headline)
    assert {k: v["met"] for k, v in checks.items()} == {
        "full_push_s": True,
        "vs_edit_s": False,
        "endpoint_change_s": True,
        "peak_rss_mib": True,
    }
    headline["endpoint_change"]["converged"] = False  # not everywhere: not met
    assert not controlplane_scale._targets(headline)["endpoint_change_s"]["met"]


def test_table_has_a_column_per_variant_and_the_curve() -> None:
    variants = {
        "mtls/delta": _run(2.5, 0.4, 0.2, 300, "mtls", "delta"),
        "plaintext/sotw": _run(4.25, 0.9, 0.3, 310, "plaintext", "sotw"),
    }
    numbers = {**variants["mtls/delta"], "by_variant": variants}
    numbers["targets"] = controlplane_scale._targets(numbers)
    numbers["curve"] = [
        {"services": 100, "full_push_s": 0.5, "full_push_ms_per_service": 5.0},
        {"services": 1000, "full_push_s": 2.5, "peak_rss_mib": 300.0},
    ]
    result = {"parameters": {"services": 1000, "proxies": 10}, "results": numbers}
    console = Console(record=True, width=60, force_terminal=False)
    print_table(console, scale_table(result))
    text = console.export_text()
    assert "mtls/delta" in text and "plaintext/sotw" in text
    assert "4.250 s" in text  # a non-headline column, not cut at 60 columns
    assert "scaling curve" in text and "5.00 ms" in text


def test_options_choose_transports_protocols_and_curve() -> None:
    args = argparse.Namespace(
        quick=False,
        services=None,
        proxies=None,
        streams_per_channel=None,
        tls=False,
        transports="plaintext",
        ads_protocols="sotw,delta",
        curve="10,20",
    )
    params = _scale_params(args)
    assert params.transports == ("plaintext",)
    assert params.protocols == ("sotw", "delta")
    assert params.curve == (10, 20)
    args.tls, args.curve = True, ""
    params = _scale_params(args)
    assert params.transports == ("mtls",) and params.curve == ()
    assert controlplane_scale.FULL.transports[0] == "mtls"  # the headline: mTLS + delta
    assert controlplane_scale.FULL.protocols[0] == "delta"
