"""The data-plane modes benchmark's result as rich tables: latency rows, memory/CPU, targets.

Reads a result as ``bench/run.py`` writes it (``parameters`` and ``results``),
so it renders a fresh run and a result file alike; rows keep the chain's order
even from a file written with sorted keys, and a skipped or failed row or run
shows its reason under its table instead of numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from bench.dataplane_modes_base import (
    AMBIENT_LATENCY_TARGET,
    CHAIN_PROXY_PAIRS,
    PERCENTILES,
    WAYPOINT_LATENCY_TARGET,
)

__all__ = ["modes_table"]

_ROW_LABELS = {
    "reference_direct": "reference: direct to the app (loopback)",
    "reference": "reference: 2 static Envoys, mTLS (1 proxy pair)",
    "direct": "direct (injection disabled, cluster-IP DNAT)",
    "sidecar": "sidecar (mTLS)",
    "ambient": "ambient L4 (node proxy, HBONE)",
    "ambient+waypoint": "ambient + waypoint (L7 proxy)",
}


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def _x(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}x"


def _mib(kib: Any) -> str:
    return "-" if kib is None else f"{float(kib) / 1024:.1f}"


def _verdict(check: Mapping[str, Any] | None) -> str:
    if not check:
        return "-"
    met = check.get("met")
    if met is None:
        return "[yellow]not measured[/yellow]"
    return "[green]met[/green]" if met else "[red]not met[/red]"


def _latency_table(params: Mapping[str, Any], numbers: Mapping[str, Any]) -> Table:
    rows: Mapping[str, Any] = numbers.get("rows") or {}
    title = (
        f"data-plane modes: two-hop chain, {params.get('rate')} rps, "
        f"{params.get('connections')} conns, {params.get('response_bytes')} B, "
        f"{params.get('duration_s')} s after {params.get('warmup_s')} s warm-up, mTLS"
    )
    table = Table(title=title)
    table.add_column("row", no_wrap=True)
    for column in (
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "rps",
        "failed",
        "added p50",
        "added p90",
        "added p99",
        "vs ref p50",
        "vs ref p90",
        "vs ref p99",
    ):
        table.add_column(column, justify="right")
    notes: list[str] = []
    # A fixed order: result files are written with sorted keys.
    order = [n for n in _ROW_LABELS if n in rows] + [n for n in rows if n not in _ROW_LABELS]
    for name in order:
        row = rows[name]
        label = _ROW_LABELS.get(name, name)
        # The reason goes under the table: in a cell it would widen the column.
        if row.get("skipped"):
            table.add_row(label, "[yellow]skipped[/yellow]")
            notes.append(f"{label} skipped: {row['skipped']}")
            continue
        if row.get("error"):
            table.add_row(label, "[red]error[/red]")
            notes.append(f"[red]{label}: {row['error']}[/red]")
            continue
        latency = row.get("latency_ms") or {}
        added = row.get("added_ms") or {}
        ratio = row.get("vs_reference") or {}
        failed = int(row.get("failed") or 0)
        rps = row.get("achieved_rps")
        table.add_row(
            label,
            *(_ms(latency.get(p)) for p in PERCENTILES),
            "-" if rps is None else f"{rps:.0f}",
            f"[red]{failed}[/red]" if failed else "0",
            *(_ms(added.get(p)) if added else "" for p in PERCENTILES),
            *(_x(ratio.get(p)) if ratio else "" for p in PERCENTILES),
        )
    table.caption = "\n".join(notes) or None
    return table


def _memory_table(params: Mapping[str, Any], numbers: Mapping[str, Any]) -> Table:
    memory: Mapping[str, Any] = numbers.get("memory") or {}
    title = (
        f"Bookinfo's 6 pods: mesh processes' memory (MiB) and CPU over "
        f"{params.get('ingress_rate')} rps x {params.get('ingress_duration_s')} s "
        "to /productpage through the ingress gateway"
    )
    table = Table(title=title)
    table.add_column("mode", no_wrap=True)
    notes: list[str] = []
    for column in (
        "processes",
        "Envoy PSS",
        "Envoy RSS",
        "all PSS",
        "all RSS",
        "all PSS (ready)",
        "Envoy CPU s",
        "all CPU s",
        "load rps",
        "failed",
    ):
        table.add_column(column, justify="right")
    for mode in sorted(memory, key=lambda m: (m != "sidecar", m)):
        run = memory[mode]
        if run.get("error"):
            table.add_row(mode, "[red]error[/red]")
            notes.append(f"[red]{mode}: {run['error']}[/red]")
            continue
        after = run.get("after_load") or {}
        ready = run.get("ready") or {}
        cpu = run.get("cpu_s") or {}
        load = run.get("load") or {}
        envoy, every = after.get("envoy") or {}, after.get("all") or {}
        failed = int(load.get("failed") or 0)
        rps = load.get("achieved_rps")
        table.add_row(
            mode,
            f"{every.get('processes', '-')} ({envoy.get('processes', '-')} Envoy)",
            _mib(envoy.get("pss_kib")),
            _mib(envoy.get("rss_kib")),
            _mib(every.get("pss_kib")),
            _mib(every.get("rss_kib")),
            _mib((ready.get("all") or {}).get("pss_kib")),
            "-" if cpu.get("envoy") is None else f"{cpu['envoy']:.2f}",
            "-" if cpu.get("all") is None else f"{cpu['all']:.2f}",
            "-" if rps is None else f"{rps:.0f}",
            f"[red]{failed}[/red]" if failed else "0",
        )
    table.caption = "\n".join(notes) or None
    return table


def _targets_table(numbers: Mapping[str, Any]) -> Table:
    targets: Mapping[str, Any] = numbers.get("targets") or {}
    table = Table(title="targets (issue 14 item 5)")
    table.add_column("target", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("verdict")
    table.add_column("also")
    latency = targets.get("ambient_added_p50") or {}
    table.add_row(
        "ambient L4 added p50 / sidecar added p50",
        _x(latency.get("value")),
        f"<= {AMBIENT_LATENCY_TARGET:g}x",
        _verdict(latency),
        "",
    )
    mem = targets.get("proxy_memory") or {}
    table.add_row(
        "ambient / sidecar PSS, all mesh processes (6 pods)",
        _x(mem.get("value")),
        "<= 0.33x",
        _verdict(mem),
        f"Envoy only {_x(mem.get('envoy_only'))}, RSS all {_x(mem.get('rss_all'))}",
    )
    waypoint = targets.get("waypoint_added_p50") or {}
    table.add_row(
        "ambient+waypoint added p50 / sidecar added p50",
        _x(waypoint.get("value")),
        f"<= {WAYPOINT_LATENCY_TARGET:g}x",
        _verdict(waypoint),
        "",
    )
    return table


def modes_table(result: Mapping[str, Any]) -> RenderableType:
    """The latency rows, the memory/CPU runs and the targets, as three tables."""
    params: Mapping[str, Any] = result.get("parameters") or {}
    numbers: Mapping[str, Any] = result.get("results") or {}
    if numbers.get("skipped"):
        table = Table(title="data-plane modes")
        table.add_column("")
        table.add_row(f"[yellow]skipped: {numbers['skipped']}[/yellow]")
        return table
    parts: list[RenderableType] = [
        _latency_table(params, numbers),
        _memory_table(params, numbers),
        _targets_table(numbers),
    ]
    notes = [
        "added = row minus direct (same chain, no proxy); vs ref = added / "
        f"({CHAIN_PROXY_PAIRS} x reference's added), the chain crossing {CHAIN_PROXY_PAIRS} "
        "proxy pairs and the reference one",
    ]
    loads = numbers.get("load_average")
    if loads:
        notes.append(f"load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f}")
    if result.get("error"):
        notes.append(f"[red]error: {result['error']}[/red]")
    parts.append("\n".join(notes))
    return Group(*parts)
