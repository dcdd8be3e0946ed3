"""Duration strings as users write them in Istio configuration.

Istio fields such as ``timeout`` or ``perTryTimeout`` are protobuf
``Duration`` values, written in YAML as ``"1.5s"``. Users also write Go style
durations (``"1m30s"``, ``"100ms"``), which Kubernetes tooling accepts, so both
are parsed. Results are whole milliseconds, the resolution Envoy works in for
these settings.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["format_duration_ms", "parse_duration_ms"]

# Unit -> milliseconds. Order matters for the tokenizer: "ms" before "m".
_UNITS: dict[str, Decimal] = {
    "h": Decimal(3_600_000),
    "m": Decimal(60_000),
    "s": Decimal(1000),
    "ms": Decimal(1),
    "us": Decimal("0.001"),
    "µs": Decimal("0.001"),
    "ns": Decimal("0.000001"),
}
_TOKEN = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")


def parse_duration_ms(text: str) -> int:
    """Parse ``"1.5s"``, ``"100ms"``, ``"1h2m3s"`` or ``"0s"`` into milliseconds.

    Negative durations, missing units (``"10"``), unknown units and empty
    strings raise ``ValueError``. Sub-millisecond parts are rounded down,
    except that a non-zero duration never becomes 0 (it rounds up to 1 ms)
    so that "some timeout" does not silently turn into "no timeout".
    """
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string like '1.5s', got {text!r}")
    s = text.strip()
    if not s:
        raise ValueError("duration is empty")
    if s.startswith("-"):
        raise ValueError(f"duration {text!r} must not be negative")
    pos = 0
    total = Decimal(0)
    for match in _TOKEN.finditer(s):
        if match.start() != pos:
            break
        try:
            number = Decimal(match.group(1))
        except InvalidOperation as exc:  # pragma: no cover - the regex only admits numbers
            raise ValueError(f"invalid duration {text!r}") from exc
        total += number * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"invalid duration {text!r}: expected a number with a unit, e.g. '1.5s'")
    ms = int(total)
    if ms == 0 and total > 0:
        ms = 1
    return ms


def format_duration_ms(ms: int) -> str:
    """Render milliseconds the protobuf way (``"1.500s"`` style, trailing zeros trimmed)."""
    if ms < 0:
        raise ValueError("duration must not be negative")
    seconds, millis = divmod(ms, 1000)
    if millis == 0:
        return f"{seconds}s"
    return f"{seconds}.{millis:03d}".rstrip("0") + "s"
