"""Turn composed YAML nodes into plain data plus a field-path -> line map.

Theory of operation: PyYAML's ``compose_all`` gives the node tree of each
document with start marks. Walking that tree once yields both the Python
value (the way ``safe_load`` would build it) and, for every mapping key and
list item, the 1-based line where it appears, keyed by its dotted path in the
user's own spelling (``spec.http[0].route[1].destination.host``). Building the
value ourselves also lets us reject duplicate keys, which ``safe_load``
silently collapses to the last one.

Paths: mapping keys are joined with ``.``; a key that itself contains ``.``,
``[`` or ``]`` (label keys such as ``app.kubernetes.io/name``) is written
``parent['app.kubernetes.io/name']``; list items are ``parent[3]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["NodeData", "join_key", "join_path", "line_in", "node_to_data"]

_MAX_DEPTH = 100  # deeper nesting is not configuration; also stops alias cycles


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


def node_to_data(node: yaml.Node, prefix: str = "") -> NodeData:
    """Build the value of ``node`` and the line of every path below it.

    Paths are relative to ``node`` (optionally under ``prefix``). Timestamps
    stay the strings the user wrote: configuration fields are strings, and a
    ``datetime`` would fail them.
    """
    out = NodeData()
    constructor = yaml.SafeLoader("")
    out.value = _walk(node, prefix, out, constructor, 0)
    return out


def _walk(node: yaml.Node, path: str, out: NodeData, ctor: yaml.SafeLoader, depth: int) -> Any:
    line = node.start_mark.line + 1
    if depth > _MAX_DEPTH:
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
            key = _scalar(key_node, ctor)
            child = join_key(path, key)
            if key in result:
                out.problems.append((child, key_line, f"duplicate key {key!r}"))
                continue
            out.lines[child] = key_line
            result[key] = _walk(value_node, child, out, ctor, depth + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        items: list[Any] = []
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            out.lines[child] = item.start_mark.line + 1
            items.append(_walk(item, child, out, ctor, depth + 1))
        return items
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node, ctor)


def _scalar(node: yaml.ScalarNode, ctor: yaml.SafeLoader) -> Any:
    if node.tag == "tag:yaml.org,2002:timestamp":
        return node.value
    return ctor.construct_object(node, deep=True)
