"""IR objects from plain data: the inverse of ``pilotfish.ir.dump.to_plain``.

Theory of operation: the dataclasses' type hints say what each field holds, so
loading walks data and hints together. A missing field takes its default (the
dump leaves defaults out); a field that may hold one of several dataclasses is
read from the one-key mapping naming its kind, as the dump writes it; tuples,
frozensets, mappings, enums and ``Literal`` values are rebuilt from their plain
form. Anything that does not fit raises ``IrLoadError`` naming the path of the
offending value (``clusters[2].tls.mode``) and why, so a hand-written IR file
(the xDS build goldens, ``tests/testdata/build/in``) fails with a clear message.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pilotfish.ir import ProxyConfig
from pilotfish.ir.dump import dataclass_hints, kind_name

__all__ = ["IrLoadError", "from_plain", "load_proxy_config"]

T = TypeVar("T")


class IrLoadError(ValueError):
    """Plain data that is not a valid IR value; the message names where."""


def load_proxy_config(data: object) -> ProxyConfig:
    """A ``ProxyConfig`` from its plain form (``to_plain`` output)."""
    return from_plain(ProxyConfig, data)


def from_plain(cls: type[T], data: object) -> T:
    """``data`` as an instance of the IR dataclass ``cls``."""
    return typing.cast(T, _load(cls, data, ""))


def _fail(path: str, reason: str) -> IrLoadError:
    return IrLoadError(f"{path or '<top>'}: {reason}")


def _load(hint: Any, data: object, path: str) -> object:
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return data
    if origin in (typing.Union, types.UnionType):
        return _load_union(hint, data, path)
    if origin is typing.Literal:
        if data not in typing.get_args(hint):
            raise _fail(path, f"{data!r} is not one of {list(typing.get_args(hint))}")
        return data
    if origin is tuple:
        return _load_tuple(hint, data, path)
    if origin in (frozenset, set):
        (item,) = typing.get_args(hint)
        items = _sequence(data, path)
        return frozenset(_load(item, v, f"{path}[{i}]") for i, v in enumerate(items))
    if origin in (dict, Mapping) or origin is typing.get_origin(Mapping[str, str]):
        return _load_mapping(hint, data, path)
    if isinstance(hint, type):
        return _load_type(hint, data, path)
    raise _fail(path, f"cannot load a value of type {hint!r}")


def _load_type(cls: type, data: object, path: str) -> object:
    if dataclasses.is_dataclass(cls):
        return _load_dataclass(cls, data, path)
    if issubclass(cls, enum.Enum):
        try:
            return cls(data)
        except ValueError:
            raise _fail(path, f"{data!r} is not a {cls.__name__}") from None
    if cls is type(None):
        if data is not None:
            raise _fail(path, f"expected nothing, got {data!r}")
        return None
    if cls is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if cls is bool and not isinstance(data, bool):
        raise _fail(path, f"expected true or false, got {data!r}")
    if cls is int and (isinstance(data, bool) or not isinstance(data, int)):
        raise _fail(path, f"expected an integer, got {data!r}")
    if not isinstance(data, cls):
        raise _fail(path, f"expected {cls.__name__}, got {data!r}")
    return data


def _load_dataclass(cls: type, data: object, path: str) -> object:
    if not isinstance(data, Mapping):
        raise _fail(path, f"expected a mapping for {cls.__name__}, got {data!r}")
    hints = dataclass_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise _fail(path, f"unknown field(s) of {cls.__name__}: {', '.join(unknown)}")
    values: dict[str, object] = {}
    for name, field in fields.items():
        where = f"{path}.{name}" if path else name
        if name not in data:
            if field.default is dataclasses.MISSING and (
                field.default_factory is dataclasses.MISSING
            ):
                raise _fail(where, f"required field of {cls.__name__} is missing")
            continue
        values[name] = _load(hints.get(name, Any), data[name], where)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise _fail(path, str(exc)) from None


def _load_union(hint: Any, data: object, path: str) -> object:
    members = typing.get_args(hint)
    if data is None and type(None) in members:
        return None
    classes: list[type] = [
        m for m in members if isinstance(m, type) and dataclasses.is_dataclass(m)
    ]
    if len(classes) >= 2:
        # Written as ``{kind: value}`` (see ``ir.dump``).
        if not (isinstance(data, Mapping) and len(data) == 1):
            kinds = [kind_name(c) for c in classes]
            raise _fail(path, f"expected a one-key mapping naming one of {kinds}")
        ((kind, value),) = data.items()
        for c in classes:
            if kind_name(c) == kind:
                return _load(c, value, f"{path}.{kind}")
        raise _fail(path, f"unknown kind {kind!r}")
    errors = []
    for member in members:
        if member is type(None):
            continue
        try:
            return _load(member, data, path)
        except IrLoadError as exc:
            errors.append(str(exc))
    raise _fail(path, "; ".join(errors) or f"unexpected {data!r}")


def _sequence(data: object, path: str) -> list[object]:
    if not isinstance(data, list | tuple):
        raise _fail(path, f"expected a list, got {data!r}")
    return list(data)


def _load_tuple(hint: Any, data: object, path: str) -> tuple[object, ...]:
    args = typing.get_args(hint)
    items = _sequence(data, path)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_load(args[0], v, f"{path}[{i}]") for i, v in enumerate(items))
    if len(items) != len(args):
        raise _fail(path, f"expected {len(args)} items, got {len(items)}")
    return tuple(
        _load(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, items, strict=True))
    )


def _load_mapping(hint: Any, data: object, path: str) -> dict[object, object]:
    key_hint, value_hint = typing.get_args(hint) or (str, Any)
    if not isinstance(data, Mapping):
        raise _fail(path, f"expected a mapping, got {data!r}")
    out: dict[object, object] = {}
    for key, value in data.items():
        loaded_key: object = key
        if key_hint is int:
            try:
                loaded_key = int(key)
            except ValueError:
                raise _fail(path, f"key {key!r} is not an integer") from None
        out[loaded_key] = _load(value_hint, value, f"{path}[{key}]")
    return out
