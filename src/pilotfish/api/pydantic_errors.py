"""Translate pydantic validation errors into (field path, short reason) pairs.

Pydantic reports locations with schema-internal steps (union member tags such
as ``int`` or ``str``); the user needs the path in their own document. Each
location is walked against the input data: steps that exist in the data are
kept, a final missing or unknown key is kept, anything else is dropped.
Several errors on the same path (one per union member) merge into one
message ("must be an integer or a string").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pilotfish.api.yamlnodes import join_path

__all__ = ["errors_to_findings"]

_TYPE_MESSAGES: dict[str, str] = {
    "extra_forbidden": "unknown field",
    "missing": "required field missing",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def errors_to_findings(exc: ValidationError, data: Any, prefix: str) -> list[tuple[str, str]]:
    """``(path, message)`` for each distinct problem, in pydantic's order."""
    merged: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        path = _path(err, data, prefix)
        message = _message(err)
        bucket = merged.setdefault(path, [])
        if message not in bucket:
            bucket.append(message)
    return [(path, _combine(messages)) for path, messages in merged.items()]


def _path(err: ErrorDetails, data: Any, prefix: str) -> str:
    loc: Sequence[str | int] = err["loc"]
    path = prefix
    current: Any = data
    last = len(loc) - 1
    for i, step in enumerate(loc):
        if _has_step(current, step):
            current = current[step]
            path = join_path(path, step)
        elif i == last and isinstance(step, str) and err["type"] == "missing":
            path = join_path(path, step)
        # Otherwise a schema-internal step (union member tag): not part of the path.
    return path


def _has_step(current: Any, step: str | int) -> bool:
    if isinstance(current, Mapping):
        return step in current
    return isinstance(current, list) and isinstance(step, int) and 0 <= step < len(current)


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "literal_error":
        expected = str((err.get("ctx") or {}).get("expected", ""))
        return f"invalid value {err['input']!r}: must be {expected}"
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    message = err["msg"]
    for noise in ("Value error, ", "Assertion failed, "):
        if message.startswith(noise):
            message = message[len(noise) :]
    return message[:1].lower() + message[1:]


def _combine(messages: list[str]) -> str:
    if len(messages) > 1 and all(m.startswith("must be ") for m in messages):
        return "must be " + " or ".join(m[len("must be ") :] for m in messages)
    return "; ".join(messages)
