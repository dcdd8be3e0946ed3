"""What the CLI prints for people: tables that are never cut, times as dates and ages."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from pilotfish.cli.get import table_rows
from pilotfish.cli.tables import print_table
from pilotfish.cli.timefmt import age, when


def _wide_table() -> Table:
    table = Table(title="latency")
    for name in ("p50", "p90", "p99", "p999", "max", "mean", "stdev", "rps", "errors", "ok"):
        table.add_column(name)
    table.add_row(*[f"{1.23456789 * i:.6f} ms" for i in range(10)])
    return table


def test_tables_off_a_terminal_are_printed_at_full_width() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    assert console.width == 80  # what a pipe gets
    print_table(console, _wide_table())
    text = out.getvalue()
    assert "…" not in text
    assert "11.111111 ms" in text
    assert max(len(line) for line in text.splitlines()) > 80
    # The console's own width is left as it was.
    assert console.width == 80


def test_tables_on_a_terminal_keep_the_terminal_width() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60, color_system=None)
    print_table(console, _wide_table())
    assert max(len(line) for line in out.getvalue().splitlines()) <= 60


def test_times_are_dates_and_ages() -> None:
    now = 1_796_000_000.0
    assert when(now - 192, now) == "2026-11-30 00:50:08 UTC (3m12s ago)"
    assert when(now + 43200, now).endswith("(in 12h00m)")
    assert when(None, now) == "-" and when(0, now) == "-"
    assert age(3 * 86400 + 4 * 3600 + 5) == "3d4h"
    assert age(42) == "42s"


def test_workload_tables_show_replicas_and_images() -> None:
    deployment = {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 3,
            "template": {"spec": {"containers": [{"name": "a", "image": "nginx:1"}]}},
        },
    }
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "busybox"}]}}
    assert table_rows("Deployment", [deployment], with_namespace=True) == [
        ["NAMESPACE", "NAME", "REPLICAS", "IMAGES"],
        ["shop", "web", "3", "nginx:1"],
    ]
    assert table_rows("Pod", [pod], with_namespace=False) == [["NAME", "IMAGES"], ["p", "busybox"]]
