"""String matching as Envoy does it, for the IR's matchers.

Route matchers (``ir.StringMatch``) become Envoy ``StringMatcher``s in
``xds/build``: exact and prefix compare literally (``ignore_case`` folds
ASCII case), regex is RE2 matched against the *whole* value (Envoy's
``safe_regex`` is a full match). The same google-re2 engine is used here so a
pattern that RE2 rejects or reads differently from Python's ``re`` gives the
answer Envoy gives. Authorization values use Istio's rules instead (``abc``
exact, ``abc*`` prefix, ``*abc`` suffix, ``*`` any non-empty value).
"""

from __future__ import annotations

import functools
from typing import Any

import re2  # type: ignore[import-untyped]

from pilotfish import ir

__all__ = ["describe", "istio_match", "string_match"]


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern)


def full_match(pattern: str, value: str) -> bool:
    """RE2 full match, as Envoy's ``safe_regex``; an invalid pattern matches nothing."""
    try:
        return _compiled(pattern).fullmatch(value) is not None
    except re2.error:  # RE2 rejects it: Envoy would have NACKed the route
        return False


def string_match(match: ir.StringMatch, value: str) -> bool:
    if match.kind == "regex":
        return full_match(f"(?i){match.value}" if match.ignore_case else match.value, value)
    want, have = match.value, value
    if match.ignore_case:
        want, have = want.lower(), have.lower()
    if match.kind == "exact":
        return have == want
    return have.startswith(want)


def describe(match: ir.StringMatch) -> str:
    """``prefix "/api"`` etc., for reasons."""
    case = " (any case)" if match.ignore_case else ""
    return f'{match.kind} "{match.value}"{case}'


def istio_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """Istio's authorization string rule for one value."""
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern
