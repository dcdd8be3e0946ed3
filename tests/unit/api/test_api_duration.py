from __future__ import annotations

import pytest

from pilotfish.api.duration import format_duration_ms, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1s", 1000),
        ("1.5s", 1500),
        ("0.001s", 1),
        ("100ms", 100),
        ("0s", 0),
        ("1h2m3s", 3_723_000),
        ("1m30s", 90_000),
        ("2h", 7_200_000),
        ("1500us", 1),
        ("500us", 1),  # non-zero never rounds to "no timeout"
        ("1.0005s", 1000),
        (".5s", 500),
        (" 3s ", 3000),
    ],
)
def test_parse(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "-1s", "1s2", "1 s", "1.5.5s", "ms", "1d"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ms", "text"), [(0, "0s"), (1500, "1.5s"), (1, "0.001s"), (60000, "60s")])
def test_format_round_trips(ms: int, text: str) -> None:
    assert format_duration_ms(ms) == text
    assert parse_duration_ms(text) == ms
