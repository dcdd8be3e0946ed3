"""Turn composed YAML nodes into plain data plus a field-path -> line map.

Theory of operation: PyYAML's ``compose_all`` gives the node tree of each
document with start marks. Walking that tree once yields both the Python
value (the way ``safe_load`` would build it) and, for every mapping key and
list item, the 1-based line where it appears, keyed by its dotted path in the
user's own spelling (``spec.http[0].route[1].destination.host``). Building the
value ourselves also lets us reject duplicate keys, which ``safe_load``
silently collapses to the last one.

Nesting deeper than ``max_depth`` (the loader's limit; ``yamlcompose`` already
refuses it while composing) and scalars that cannot be read (an explicit
``!!int abc``, an integer too long to print) or that are no JSON value
(``!!binary``) are reported as problems of their path, not raised. (Tags
PyYAML has no constructor for still raise its ``ConstructorError``.)

Paths: mapping keys are joined with ``.``; a key that itself contains ``.``,
``[`` or ``]`` (label keys such as ``app.kubernetes.io/name``) is written
``parent['app.kubernetes.io/name']``; list items are ``parent[3]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pilotfish.api.limits import DEFAULT_LIMITS

__all__ = ["NodeData", "join_key", "join_path", "line_in", "node_to_data"]

#: Integers wider than this are refused: Python cannot print ints of more than
#: 4300 digits (about 14 000 bits), and error messages and rendering print them.
_MAX_INT_BITS = 4096


def join_key(path: str, key: object) -> str:
    """Path of mapping key ``key`` under ``path``."""
    text = str(key)
    if any(c in text for c in ".[]"):
        return f"{path}['{text}']"
    return f"{path}.{text}" if path else text


def join_path(path: str, part: str | int) -> str:
    """Extend ``path`` by a mapping key (str) or a list index (int)."""
    if isinstance(part, int):
        return f"{path}[{part}]"
    return join_key(path, part)


def line_in(lines: Mapping[str, int], field_path: str, default: int = 0) -> int:
    """Line of ``field_path``, else of its nearest ancestor present, else ``default``."""
    path = field_path
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return default


@dataclass
class NodeData:
    """Result of walking one node: the value, the line map and structural problems."""

    value: Any = None
    lines: dict[str, int] = field(default_factory=dict)
    # (path, line, message) for duplicate keys, unhashable keys and the like.
    problems: list[tuple[str, int, str]] = field(default_factory=list)


def node_to_data(
    node: yaml.Node, prefix: str = "", max_depth: int = DEFAULT_LIMITS.max_depth
) -> NodeData:
    """Build the value of ``node`` and the line of every path below it.

    Paths are relative to ``node`` (optionally under ``prefix``). Timestamps
    stay the strings the user wrote: configuration fields are strings, and a
    ``datetime`` would fail them.
    """
    out = NodeData()
    out.value = _walk(node, prefix, _Walker(out, yaml.SafeLoader(""), max_depth), 0)
    return out


@dataclass(frozen=True, slots=True)
class _Walker:
    """What every step of one walk shares."""

    out: NodeData
    ctor: yaml.SafeLoader
    max_depth: int


def _walk(node: yaml.Node, path: str, walker: _Walker, depth: int) -> Any:
    out, ctor = walker.out, walker.ctor
    line = node.start_mark.line + 1
    if depth > walker.max_depth:
        out.problems.append((path, line, "nesting too deep (or a recursive alias)"))
        return None
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)  # resolves "<<" merge keys like safe_load does
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                out.problems.append((path, key_line, "mapping keys must be plain strings"))
                continue
            key = _scalar(key_node, path, out, ctor)
            child = join_key(path, key)
            if key in result:
                out.problems.append((child, key_line, f"duplicate key {key!r}"))
                continue
            out.lines[child] = key_line
            result[key] = _walk(value_node, child, walker, depth + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        items: list[Any] = []
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            out.lines[child] = item.start_mark.line + 1
            items.append(_walk(item, child, walker, depth + 1))
        return items
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node, path, out, ctor)


def _scalar(node: yaml.ScalarNode, path: str, out: NodeData, ctor: yaml.SafeLoader) -> Any:
    if node.tag == "tag:yaml.org,2002:timestamp":
        return node.value
    line = node.start_mark.line + 1
    try:
        value = ctor.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:  # e.g. "!!int abc", a 5000-digit number
        kind = node.tag.rsplit(":", 1)[-1]
        reason = str(exc).split(";", 1)[0]
        out.problems.append((path, line, f"cannot read this value as {kind}: {reason}"))
        return None
    if isinstance(value, bytes):  # configuration is JSON data: no binary type
        out.problems.append((path, line, "binary values (!!binary) are not supported"))
        return None
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        out.problems.append((path, line, f"integer wider than {_MAX_INT_BITS} bits"))
        return None
    return value
