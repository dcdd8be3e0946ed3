"""Plain-data dumps of IR objects, for golden files and debugging output.

``to_plain`` turns any IR dataclass into nested dicts, lists and scalars that
YAML or JSON can print. Fields equal to their default are left out so goldens
show only what a case actually sets. Where a field can hold one of several
dataclasses (``NetworkFilter``, ``RouteAction``), the value is wrapped in a
one-key mapping naming its kind (``{"tcp_proxy": {...}}``), so the dump stays
unambiguous even when every field of the chosen variant is at its default.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "Plain", "dataclass_hints", "kind_name", "redact", "to_plain"]

Plain = None | bool | int | float | str | list["Plain"] | dict[str, "Plain"]

_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")

REDACTED = "<redacted>"
# Envoy DataSource fields that hold key material inline (a filename is not secret).
_INLINE_FIELDS = frozenset({"inline_string", "inline_bytes", "inlineString", "inlineBytes"})
_KEY_FIELDS = frozenset({"private_key", "privateKey"})


def to_plain(obj: object) -> Plain:
    """``obj`` as plain data: dataclasses become dicts (default-valued fields
    omitted), tuples/lists/sets become lists (sets sorted), mappings become
    dicts with string keys, enums their value. Raises ``TypeError`` for
    anything else that is not a scalar."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _dataclass_to_plain(obj)
    if isinstance(obj, tuple | list):
        return [to_plain(item) for item in obj]
    if isinstance(obj, set | frozenset):
        return [to_plain(item) for item in sorted(obj)]
    if isinstance(obj, Mapping):
        return {str(key): to_plain(value) for key, value in obj.items()}
    raise TypeError(f"cannot dump {type(obj).__name__} as plain data")


def _dataclass_to_plain(obj: Any) -> dict[str, Plain]:
    hints = dataclass_hints(type(obj))
    out: dict[str, Plain] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if _is_default(field, value):
            continue
        plain = to_plain(value)
        if dataclasses.is_dataclass(value) and _is_dataclass_union(hints.get(field.name)):
            plain = {kind_name(type(value)): plain}
        out[field.name] = plain
    return out


def _is_default(field: dataclasses.Field[Any], value: object) -> bool:
    if field.default is not dataclasses.MISSING:
        return bool(value == field.default)
    if field.default_factory is not dataclasses.MISSING:
        return bool(value == field.default_factory())
    return False


def dataclass_hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass (empty when they cannot be resolved)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        # Unresolvable annotations only cost the kind tags, never the data.
        return {}


def _is_dataclass_union(hint: object) -> bool:
    """Whether ``hint`` allows two or more different dataclasses."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return False
    members = [arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)]
    return len(members) >= 2


def kind_name(cls: type) -> str:
    """The tag naming a dataclass in a one-of field (``TcpProxy`` -> ``tcp_proxy``)."""
    return _CAMEL_BOUNDARY.sub("_", cls.__name__).lower()


def redact(data: Any) -> Any:
    """A copy of plain data (``to_plain`` output, or protos as JSON dicts) with
    inline private keys replaced by ``REDACTED``: IR ``key_pem`` values and the
    ``inline_string``/``inline_bytes`` of any ``private_key`` DataSource.
    Everything else, including key *file names*, is kept. Debug endpoints and
    golden files show configuration through this."""
    if isinstance(data, Mapping):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            if key == "key_pem" and isinstance(value, str) and value:
                out[key] = REDACTED
            elif key in _KEY_FIELDS and isinstance(value, Mapping):
                out[key] = {
                    k: REDACTED if k in _INLINE_FIELDS else redact(v) for k, v in value.items()
                }
            else:
                out[key] = redact(value)
        return out
    if isinstance(data, list | tuple):
        return [redact(item) for item in data]
    return data
