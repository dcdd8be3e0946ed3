"""``pilotfish stat`` and ``pilotfish top``: golden metrics per workload, from Prometheus.

Theory of operation: both read Istio's standard metrics through Prometheus'
HTTP API (``/api/v1/query``), as reported by the destination (the server's
sidecar sees every request, whoever sent it): request rate, success rate
(share of non-5xx) and latency percentiles from the
``istio_request_duration_milliseconds`` histogram over ``--window``, grouped
by workload and namespace. ``top`` redraws the same table live until
interrupted (``--once`` prints one table, for scripts).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pilotfish.cli.tables import print_table
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import read_state

__all__ = ["WorkloadStats", "collect", "stat", "top"]

_BY = "destination_workload, destination_workload_namespace"


@dataclass(frozen=True, slots=True)
class WorkloadStats:
    namespace: str
    workload: str
    rps: float
    success: float | None  # 0..1; None without requests
    p50: float | None
    p95: float | None
    p99: float | None


def _query(prometheus: str, promql: str, at: float) -> list[dict[str, Any]]:
    """An instant query evaluated at ``at`` (every query of one table uses the same
    instant, so a scrape landing between two queries cannot make them disagree)."""
    params = {"query": promql, "time": f"{at:.3f}"}
    url = f"{prometheus.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            answer = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise click.ClickException(f"cannot query Prometheus at {prometheus}: {exc}") from exc
    if answer.get("status") != "success":
        raise click.ClickException(f"Prometheus refused {promql!r}: {answer.get('error')}")
    return list(answer["data"]["result"])


def _by_workload(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for row in rows:
        m = row["metric"]
        value = float(row["value"][1])
        if value == value:  # NaN when a histogram has no samples in the window
            key = (m.get("destination_workload_namespace", ""), m.get("destination_workload", ""))
            out[key] = value
    return out


def collect(prometheus: str, namespace: str | None, window: str) -> list[WorkloadStats]:
    """One row per workload that received requests within ``window``."""
    sel = 'reporter="destination"'
    if namespace:
        sel += f',destination_workload_namespace="{namespace}"'
    rate = f"sum(rate(istio_requests_total{{{sel}}}[{window}])) by ({_BY})"
    ok = f'sum(rate(istio_requests_total{{{sel},response_code!~"5.."}}[{window}])) by ({_BY})'
    at = time.time()
    rps = _by_workload(_query(prometheus, rate, at))
    good = _by_workload(_query(prometheus, ok, at))
    quantiles = {}
    for q in (0.5, 0.95, 0.99):
        promql = (
            f"histogram_quantile({q}, sum(rate(istio_request_duration_milliseconds_bucket"
            f"{{{sel}}}[{window}])) by (le, {_BY}))"
        )
        quantiles[q] = _by_workload(_query(prometheus, promql, at))
    rows = []
    for key, value in sorted(rps.items()):
        rows.append(
            WorkloadStats(
                namespace=key[0],
                workload=key[1],
                rps=value,
                success=None if value == 0 else good.get(key, 0.0) / value,
                p50=quantiles[0.5].get(key),
                p95=quantiles[0.95].get(key),
                p99=quantiles[0.99].get(key),
            )
        )
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def _table(rows: list[WorkloadStats], window: str) -> Table:
    table = Table(title=f"inbound golden metrics over {window}")
    for column in ("NAMESPACE", "WORKLOAD", "SUCCESS", "RPS", "P50", "P95", "P99"):
        table.add_column(column, justify="left" if column in ("NAMESPACE", "WORKLOAD") else "right")
    for r in rows:
        success = "-" if r.success is None else f"{100 * r.success:.2f}%"
        table.add_row(
            r.namespace, r.workload, success, f"{r.rps:.2f}", _ms(r.p50), _ms(r.p95), _ms(r.p99)
        )
    return table


def _prometheus_url(given: str | None, state_dir: str) -> str:
    if given:
        return given
    state = read_state(RuntimeSettings(state_dir=Path(state_dir).resolve()).state_file)
    if state is not None and state.addons.get("prometheus"):
        return state.addons["prometheus"]
    return "http://127.0.0.1:9090"


_options = [
    click.option("-n", "--namespace", default=None, help="Only this namespace (default: all)."),
    click.option("--window", default="1m", show_default=True, help="Rate window (PromQL)."),
    click.option("--prometheus", default=None, help="Prometheus URL (default: the mesh's)."),
    click.option("--state-dir", default=".pilotfish", show_default=True),
]


def _with_options(f: Any) -> Any:
    for option in reversed(_options):
        f = option(f)
    return f


@click.command("stat")
@_with_options
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def stat(
    namespace: str | None, window: str, prometheus: str | None, state_dir: str, output: str
) -> None:
    """Request rate, success rate and latency percentiles per workload."""
    rows = collect(_prometheus_url(prometheus, state_dir), namespace, window)
    if output == "json":
        click.echo(json.dumps([_plain(r) for r in rows], indent=2))
        return
    print_table(Console(), _table(rows, window))


def _plain(r: WorkloadStats) -> dict[str, Any]:
    return {
        "namespace": r.namespace,
        "workload": r.workload,
        "rps": r.rps,
        "success_rate": r.success,
        "latency_ms": {"p50": r.p50, "p95": r.p95, "p99": r.p99},
    }


@click.command("top")
@_with_options
@click.option("--once", is_flag=True, help="Print one table and exit.")
@click.option("--interval", type=float, default=2.0, show_default=True)
def top(
    namespace: str | None,
    window: str,
    prometheus: str | None,
    state_dir: str,
    once: bool,
    interval: float,
) -> None:
    """The busiest workloads, live (Ctrl-C stops)."""
    url = _prometheus_url(prometheus, state_dir)

    def busiest() -> Table:
        rows = sorted(collect(url, namespace, window), key=lambda r: -r.rps)
        return _table(rows, window)

    if once:
        print_table(Console(), busiest())
        return
    try:
        with Live(busiest(), refresh_per_second=1) as live:
            while True:
                time.sleep(interval)  # a display refresh period, not a wait for a condition
                live.update(busiest())
    except KeyboardInterrupt:
        pass
