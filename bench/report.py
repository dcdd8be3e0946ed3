"""Presenting benchmark results: rich tables on the terminal, JSON files under ``bench/results``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

__all__ = ["RESULTS_DIR", "dataplane_table", "scale_table", "write_result"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_result(name: str, payload: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<results_dir>/<name>.json`` (pretty, sorted keys); return its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f} s"


def _mib(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f} MiB"


def _verdict(check: dict[str, Any] | None, unit: str) -> str:
    if check is None:
        return ""
    mark = "[green]met[/green]" if check.get("met") else "[red]not met[/red]"
    return f"<= {check['limit']:g} {unit}: {mark}"


def _change_row(change: dict[str, Any] | None, proxies: int) -> tuple[str, str]:
    if not change:
        return "-", "-"
    value = _seconds(change.get("convergence_s"))
    if not change.get("converged"):
        value += " [red](not converged)[/red]"
    return value, f"{change.get('acked')}/{change.get('affected')} acked of {proxies}"


def scale_table(result: dict[str, Any]) -> RenderableType:
    """A control-plane scale run: one value column per variant measured
    (``by_variant``, the headline first; older results: ``by_protocol`` or one
    column), the headline's detail and target, then the scaling curve if any."""
    params = result.get("parameters", {})
    numbers = result.get("results", {})
    targets = numbers.get("targets", {})
    proxies = int(params.get("proxies", 0))
    runs: dict[str, dict[str, Any]] = (
        numbers.get("by_variant")
        or numbers.get("by_protocol")
        or {str(numbers.get("protocol", "value")): numbers}
    )
    title = f"control-plane scale: N={params.get('services')} services, M={proxies} proxies"
    table = Table(title=title)
    table.add_column("metric")
    for name in runs:
        table.add_column(name, justify="right")
    table.add_column("detail (first column)")
    table.add_column("target (first column)")
    first = next(iter(runs.values()))

    def row(metric: str, cell: Any, detail: str = "", target: str = "") -> None:
        table.add_row(metric, *(cell(run) for run in runs.values()), detail, target)

    def full_cell(run: dict[str, Any]) -> str:
        full = run.get("full_push") or {}
        if full and not full.get("converged"):
            return f"[red]{full.get('complete')}/{proxies} complete[/red]"
        return _seconds(run.get("full_push_s"))

    full = first.get("full_push") or {}
    row("control plane ready", lambda r: _seconds(r.get("cp_ready_s")))
    row(
        "initial full push",
        full_cell,
        f"median proxy {_seconds(full.get('median_complete_s'))}" if full else "",
        _verdict(targets.get("full_push_s"), "s"),
    )
    for metric, key, target in (
        ("VirtualService edit -> RDS", "vs_edit", "vs_edit_s"),
        ("endpoint change -> EDS", "endpoint_change", "endpoint_change_s"),
    ):
        row(
            metric,
            lambda r, k=key: _change_row(r.get(k), proxies)[0],
            _change_row(first.get(key), proxies)[1],
            _verdict(targets.get(target), "s"),
        )
        row(
            "  first response after the write",
            lambda r, k=key: _seconds((r.get(k) or {}).get("first_response_s")),
        )
    row(
        "control plane peak RSS",
        lambda r: _mib(r.get("cp_peak_rss_mib")),
        "",
        _verdict(targets.get("peak_rss_mib"), "MiB"),
    )
    row("control plane CPU", lambda r: _seconds(r.get("cp_cpu_s")), "user+system")
    row(
        "simulator CPU",
        lambda r: _seconds(r.get("sim_cpu_s")),
        f"peak RSS {_mib(first.get('sim_peak_rss_mib'))}",
    )
    for name, run in runs.items():
        run_full = run.get("full_push") or {}
        if run_full.get("stream_errors"):
            table.add_row(
                f"stream errors ({name})",
                *([""] * len(runs)),
                f"{run_full['stream_errors']}: {run_full.get('first_error')}",
                "",
            )
        if run.get("error"):
            table.add_row(f"[red]error ({name})[/red]", *([""] * len(runs)), str(run["error"]), "")
    if result.get("error") and not any(r.get("error") for r in runs.values()):
        table.add_row("[red]error[/red]", *([""] * len(runs)), str(result["error"]), "")
    curve = numbers.get("curve") or []
    if not curve:
        return table
    return Group(table, _curve_table(curve, next(iter(runs)), proxies))


def _curve_table(curve: list[dict[str, Any]], variant: str, proxies: int) -> Table:
    table = Table(title=f"scaling curve: {variant}, M={proxies} proxies")
    for name in (
        "services",
        "full push",
        "per service",
        "VS edit",
        "endpoint change",
        "CP peak RSS",
        "per service",
        "marginal per service",
        "CP CPU",
    ):
        table.add_column(name, justify="right")
    for point in curve:
        per_ms = point.get("full_push_ms_per_service")
        per_kib = point.get("peak_rss_kib_per_service")
        marginal = point.get("marginal_rss_kib_per_service")
        table.add_row(
            str(point.get("services")),
            _seconds(point.get("full_push_s")),
            "-" if per_ms is None else f"{per_ms:.2f} ms",
            _seconds(point.get("vs_edit_s")),
            _seconds(point.get("endpoint_change_s")),
            _mib(point.get("peak_rss_mib")),
            "-" if per_kib is None else f"{per_kib:.0f} KiB",
            "-" if marginal is None else f"{marginal:.0f} KiB",
            _seconds(point.get("cpu_s")),
        )
        if point.get("error"):
            table.add_row(f"[red]error[/red] {point['error']}", *([""] * 8))
    return table


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def _range(values: Any) -> str:
    return "-" if not values else "-".join(f"{v:.1f}" for v in values)


def _reference_caption(ref: dict[str, Any]) -> str:
    if not ref:
        return ""
    direct, mesh = ref.get("direct_ms") or {}, ref.get("sidecars_ms") or {}
    return (
        f"reference ({ref.get('setup')}): direct p50 {_range(direct.get('p50'))} / "
        f"p90 {_range(direct.get('p90'))} ms; sidecars p50 {_range(mesh.get('p50'))} / "
        f"p90 {_range(mesh.get('p90'))} ms; each Envoy ~{ref.get('envoy_rss_mib')} MiB RSS"
    )


_ROW_NAMES = {
    "direct": "direct (loopback)",
    "sidecars": "explicit sidecars",
    "sidecars_no_telemetry": "explicit sidecars, telemetry off",
    "direct_pods": "direct (pod to pod, no capture)",
    "transparent_sidecars": "transparent sidecars",
}
# Short forms for the rows that refer back to an arrangement.
_SHORT_NAMES = {
    "sidecars": "explicit",
    "sidecars_no_telemetry": "explicit, no telemetry",
    "direct_pods": "direct pods",
    "transparent_sidecars": "transparent",
}


def _added_rows(numbers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``"<via> - <base>"`` -> added p50/p90/p99; older results have only ``added_latency_ms``."""
    added: dict[str, dict[str, Any]] = numbers.get("added_latency") or {}
    if not added and numbers.get("added_latency_ms"):
        added = {"sidecars - direct": numbers["added_latency_ms"]}
    return added


def _telemetry_rows(table: Table, cost: dict[str, Any]) -> None:
    """What telemetry costs: added latency with it / without it, and extra RSS."""
    if not cost:
        return
    targets = cost.get("targets") or {}
    ratio = cost.get("added_latency_ratio") or {}
    table.add_row(
        "[bold]telemetry[/bold] added latency on/off "
        f"(target <= {targets.get('added_latency_ratio')})",
        *("-" if ratio.get(k) is None else f"{ratio[k]:.2f}x" for k in ("p50", "p90", "p99")),
    )
    for role, extra in (cost.get("extra_rss_mib") or {}).items():
        table.add_row(
            f"[bold]telemetry[/bold] extra RSS, {role} Envoy "
            f"(target <= {targets.get('extra_rss_mib')} MiB)",
            *([""] * 6),
            "-" if extra is None else f"{extra:+.1f}",
        )


def dataplane_table(result: dict[str, Any]) -> Table:
    """Latency per arrangement, the added latency, and each proxy's CPU and memory.

    CPU is average cores used over the measured run; RSS is ``VmRSS`` at its end
    with the peak (``VmHWM``) in parentheses.
    """
    params = result.get("parameters", {})
    numbers = result.get("results", {})
    arrangements: dict[str, Any] = numbers.get("arrangements") or {}
    generator = (numbers.get("load_generator") or {}).get("name", "?")
    title = (
        f"data plane: {params.get('rate')} rps, {params.get('connections')} conns, "
        f"{params.get('response_bytes')} B, {params.get('duration_s'):g} s, {generator}"
    )
    table = Table(title=title, caption=_reference_caption(numbers.get("reference") or {}))
    table.add_column("", no_wrap=True)
    for column in ("p50 ms", "p90 ms", "p99 ms", "rps", "failed", "CPU", "RSS MiB"):
        table.add_column(column, justify="right")
    skipped: list[str] = []
    for name, run in arrangements.items():
        if "skipped" in run:
            table.add_row(_ROW_NAMES.get(name, name), "[yellow]skipped[/yellow]")
            skipped.append(f"{name} skipped: {run['skipped']}")
            continue
        latency = run.get("latency_ms") or {}
        failed = int(run.get("failed") or 0)
        table.add_row(
            _ROW_NAMES.get(name, name),
            *(_ms(latency.get(k)) for k in ("p50", "p90", "p99")),
            "-" if run.get("achieved_rps") is None else f"{run['achieved_rps']:.0f}",
            f"[red]{failed}[/red]" if failed else "0",
        )
    for pair, added in _added_rows(numbers).items():
        via, _, base = pair.partition(" - ")
        label = f"[bold]added[/bold] {_SHORT_NAMES.get(via, via)} - {_SHORT_NAMES.get(base, base)}"
        table.add_row(label, *(_ms(added.get(k)) for k in ("p50", "p90", "p99")))
    for name, run in arrangements.items():
        for role, usage in (run.get("proxies") or {}).items():
            rss, peak, cores = (
                usage.get("rss_mib"),
                usage.get("peak_rss_mib"),
                usage.get("cpu_cores"),
            )
            table.add_row(
                f"{role} Envoy ({_SHORT_NAMES.get(name, name)})",
                *([""] * 5),
                "-" if cores is None else f"{cores:.3f}",
                "-" if rss is None or peak is None else f"{rss:.1f} ({peak:.1f})",
            )
    for name, run in arrangements.items():
        if run.get("app_cpu_cores") is not None:
            short = _SHORT_NAMES.get(name, name)
            table.add_row(f"app ({short})", *([""] * 5), f"{run['app_cpu_cores']:.3f}")
    _telemetry_rows(table, numbers.get("telemetry_cost") or {})
    if skipped:
        table.caption = "\n".join([*skipped, str(table.caption or "")])
    if result.get("error"):
        table.add_row("[red]error[/red]")
        table.caption = f"[red]{result['error']}[/red]"
    return table
