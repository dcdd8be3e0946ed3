"""Printing tables that never cut a value.

Rich fits a table into the console's width, shortening cells with "…" when
it is narrower than the table: on a pipe or a file (no terminal, so 80
columns) a latency such as ``12.345 ms`` became ``12.…``. Off a terminal
there is no width to respect, so a table is printed at its own natural width;
on a terminal rich keeps wrapping to the screen.
"""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.measure import Measurement

__all__ = ["print_table"]

_UNBOUNDED = 1_000_000


def print_table(console: Console, table: RenderableType) -> None:
    """Print ``table`` on ``console``, at full width when it is not a terminal."""
    if console.is_terminal:
        console.print(table)
        return
    options = console.options.update(width=_UNBOUNDED, max_width=_UNBOUNDED)
    natural = Measurement.get(console, options, table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width
