"""Compose YAML (and JSON) text into node trees within ``ParseLimits``.

Theory of operation: PyYAML's composer recurses once per nesting level (5 000
levels of ``[`` end in ``RecursionError``) and hands out an aliased node as
the very node of its anchor, so the tree stays small while anything that
walks it (``yamlnodes``) does the work of the fully expanded tree: nine
levels of nine aliases is 387 million nodes from twelve lines. This module
drives the same parser events with an explicit stack instead, building the
same nodes PyYAML would (tags resolved by the same resolver, same marks,
same errors for undefined aliases and duplicate anchors), while counting
what the expanded tree costs:

- every node event adds one node (and a scalar its length in characters);
  every alias adds the expanded size of its anchored node (nodes and scalar
  characters, recorded when that node is complete) to the file's totals and
  to what aliases have added;
- depth is the number of open collections, plus the height of an aliased
  node where the alias is used;
- an alias of a node that is still open (``&a [*a]``) is a cycle and refused.

The first bound crossed raises ``ParseLimitError`` with the line of the event
that crossed it, before the node it would have built exists.

Speed: the events come from libyaml (``yaml.CParser``) when PyYAML was built
with it, about ten times faster than PyYAML's pure-Python scanner, which was
most of what loading a file cost. The two agree on events except for three
details mapped back here, so the nodes are PyYAML's: a plain scalar's style
is ``""`` (PyYAML: None); an indentless sequence (``key:`` then ``- item`` at
the key's column) has ``flow_style`` False (PyYAML: None); at the end of a
text without a final line break, a collection's end mark is on a line after
the last (PyYAML: on the last line). They read a tab in a plain scalar and a
byte-order mark inside a text differently, so a text holding either goes to
the pure-Python parser alone. Their error messages differ, so on any
error that is not a crossed limit the text is composed again, from the start,
by the pure-Python parser, and its documents and error are what the caller
gets (documents already handed out are not handed out again): refused text
costs twice, accepted text once.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import yaml
from yaml.composer import ComposerError
from yaml.error import Mark

from pilotfish.api.limits import DEFAULT_LIMITS, ParseLimits

__all__ = ["ParseLimitError", "compose_documents"]

_Collection = yaml.SequenceNode | yaml.MappingNode


class ParseLimitError(yaml.YAMLError):
    """The text exceeds one of the ``ParseLimits``; ``line`` is 1-based (0: unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(slots=True)
class _Anchor:
    node: yaml.Node
    size: int | None = None  # expanded node count; None while the node is open
    chars: int = 0  # expanded scalar characters
    height: int = 0  # collections nested in it, itself included


@dataclass(slots=True)
class _Open:
    """A collection whose end event has not come yet."""

    node: _Collection
    anchor: _Anchor | None
    nodes_before: int  # the budget's node count before this node
    chars_before: int  # and its character count
    height: int = 0  # tallest child so far
    key: yaml.Node | None = None  # mappings: the key waiting for its value


@dataclass(slots=True)
class _Budget:
    """What the file has cost so far."""

    limits: ParseLimits
    nodes: int = 0
    chars: int = 0
    documents: int = 0
    aliases: int = 0
    alias_nodes: int = 0
    alias_chars: int = 0
    anchors: dict[str, _Anchor] = field(default_factory=dict)

    def document(self, event: yaml.Event) -> None:
        self.documents += 1
        if self.documents > self.limits.max_documents:
            raise ParseLimitError(
                f"more than {self.limits.max_documents} YAML documents (limit)", _line(event)
            )
        self.anchors = {}  # anchors are local to their document

    def add_nodes(self, count: int, event: yaml.Event) -> None:
        self.nodes += count
        if self.nodes > self.limits.max_nodes:
            raise ParseLimitError(
                f"more than {self.limits.max_nodes} YAML nodes (limit)", _line(event)
            )

    def check_depth(self, depth: int, event: yaml.Event) -> None:
        if depth > self.limits.max_depth:
            raise ParseLimitError(
                f"nesting deeper than {self.limits.max_depth} levels (limit)", _line(event)
            )

    def anchor(self, event: yaml.NodeEvent, node: yaml.Node) -> _Anchor | None:
        name = event.anchor
        if name is None:
            return None
        first = self.anchors.get(name)
        if first is not None:
            raise ComposerError(
                f"found duplicate anchor {name!r}; first occurrence",
                first.node.start_mark,
                "second occurrence",
                _mark(event.start_mark),
            )
        entry = self.anchors[name] = _Anchor(node)
        return entry

    def alias(self, event: yaml.AliasEvent, depth: int) -> tuple[yaml.Node, int]:
        """The node an alias stands for, and its height, once its cost is counted."""
        name = str(event.anchor)
        entry = self.anchors.get(name)
        if entry is None:
            raise ComposerError(
                None, None, f"found undefined alias {name!r}", _mark(event.start_mark)
            )
        line = _line(event)
        if entry.size is None:
            raise ParseLimitError(
                f"recursive YAML alias *{name} (used inside its own anchor)", line
            )
        self.aliases += 1
        if self.aliases > self.limits.max_aliases:
            raise ParseLimitError(f"more than {self.limits.max_aliases} YAML aliases (limit)", line)
        self.alias_nodes += entry.size
        if self.alias_nodes > self.limits.max_alias_nodes:
            raise ParseLimitError(
                f"YAML aliases expand to more than {self.limits.max_alias_nodes} nodes (limit)",
                line,
            )
        self.alias_chars += entry.chars
        if self.alias_chars > self.limits.max_alias_chars:
            raise ParseLimitError(
                f"YAML aliases expand to more than {self.limits.max_alias_chars} "
                "characters of text (limit)",
                line,
            )
        self.add_nodes(entry.size, event)
        self.chars += entry.chars
        self.check_depth(depth + entry.height, event)
        return entry.node, entry.height


def compose_documents(text: str, limits: ParseLimits = DEFAULT_LIMITS) -> Iterator[yaml.Node]:
    """The root node of each document of ``text``, like ``yaml.compose_all`` with
    ``SafeLoader``, lazily (a later document's error comes after earlier roots).

    Raises ``ParseLimitError`` when a limit is crossed, and PyYAML's errors for
    text that is not YAML. Byte size is the caller's to check (before reading).
    """
    handed_out = 0
    if _FAST_LOADER is not None and not any(c in text for c in _PYYAML_ONLY):
        try:
            for root in _compose_stream(_FAST_LOADER(text), text, limits):
                handed_out += 1
                yield root
            return
        except ParseLimitError:
            raise  # the same events, so the pure-Python parser would cross it too
        except Exception as exc:  # any other error: PyYAML's own parser says what is wrong
            cut = _libyaml_depth_cut(exc, limits)
            if cut is not None:
                _cross_depth_before(text[:cut], limits)
    for index, root in enumerate(_compose_stream(yaml.SafeLoader(text), text, limits)):
        if index >= handed_out:
            yield root


# libyaml's parser through PyYAML's resolver, when PyYAML was built with it.
_FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
# Characters the two parsers read differently: libyaml accepts a tab inside a
# plain scalar that PyYAML refuses, and reads a byte-order mark inside the text
# differently. Texts holding one are PyYAML's alone.
_PYYAML_ONLY = ("\t", "\ufeff")


# libyaml refuses flow collections nested deeper than this, before its first event.
_LIBYAML_MAX_NESTING = 1000


def _libyaml_depth_cut(exc: Exception, limits: ParseLimits) -> int | None:
    """Where libyaml stopped for nesting too deep (its own limit, beyond ours), if so.

    libyaml looks ahead for a possible implicit key before it hands out the
    first event, so past 1000 flow levels it fails before our depth count could
    refuse the text. PyYAML's scanner has no such limit, but its look-ahead
    checks every open level per token: thousands of levels cost it seconds.
    """
    if limits.max_depth >= _LIBYAML_MAX_NESTING or not isinstance(exc, yaml.MarkedYAMLError):
        return None
    mark = exc.problem_mark
    if mark is None or "maximum nesting depth" not in (exc.problem or ""):
        return None
    return int(mark.index)


def _cross_depth_before(prefix: str, limits: ParseLimits) -> None:
    """Compose ``prefix`` (the text up to where libyaml's nesting limit stopped it)
    with libyaml, to raise the ParseLimitError our depth limit gives there.

    Every level up to libyaml's limit is open at the cut, so the event crossing
    our (smaller) limit comes before it, and the events up to that one are the
    full text's: an open collection spans more than the 1024 characters an
    implicit key may have, so no look-ahead past the cut could have changed
    them. Any other outcome (an error before that event) returns, and the
    caller composes the whole text with PyYAML's parser as for any error.
    """
    assert _FAST_LOADER is not None
    try:
        for _ in _compose_stream(_FAST_LOADER(prefix), prefix, limits):
            pass
    except ParseLimitError:
        raise
    except Exception:  # the caller's slow path reports this text
        pass


def _compose_stream(loader: yaml.SafeLoader, text: str, limits: ParseLimits) -> Iterator[yaml.Node]:
    budget = _Budget(limits)
    try:
        _next_event(loader)  # StreamStartEvent
        while not loader.check_event(yaml.StreamEndEvent):
            budget.document(_next_event(loader))  # DocumentStartEvent
            root = _compose_node(loader, text, budget)
            _next_event(loader)  # DocumentEndEvent
            yield root
    finally:
        loader.dispose()


def _compose_node(loader: yaml.SafeLoader, text: str, budget: _Budget) -> yaml.Node:
    """Compose one document's root from the events, without recursion."""
    stack: list[_Open] = []
    while True:
        event = _next_event(loader)
        node: yaml.Node
        if isinstance(event, yaml.AliasEvent):
            node, height = budget.alias(event, len(stack))
        elif isinstance(event, yaml.ScalarEvent):
            budget.add_nodes(1, event)
            budget.chars += len(event.value)
            node, height = _scalar(loader, event), 0
            entry = budget.anchor(event, node)
            if entry is not None:
                entry.size, entry.chars = 1, len(event.value)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            budget.add_nodes(1, event)
            budget.check_depth(len(stack) + 1, event)
            collection = _collection(loader, event, text)
            entry = budget.anchor(event, collection)
            stack.append(_Open(collection, entry, budget.nodes - 1, budget.chars))
            continue
        else:  # SequenceEndEvent or MappingEndEvent: the parser guarantees the pairing
            done = stack.pop()
            done.node.end_mark = _end_mark(_mark(event.end_mark), text)
            node, height = done.node, done.height + 1
            if done.anchor is not None:
                done.anchor.size = budget.nodes - done.nodes_before
                done.anchor.chars = budget.chars - done.chars_before
                done.anchor.height = height
        if not stack:
            return node
        _attach(stack[-1], node, height)


def _attach(parent: _Open, node: yaml.Node, height: int) -> None:
    parent.height = max(parent.height, height)
    if isinstance(parent.node, yaml.SequenceNode):
        parent.node.value.append(node)
    elif parent.key is None:
        parent.key = node
    else:
        parent.node.value.append((parent.key, node))
        parent.key = None


def _scalar(loader: yaml.SafeLoader, event: yaml.ScalarEvent) -> yaml.ScalarNode:
    tag = event.tag
    if tag is None or tag == "!":
        tag = _resolve(loader, yaml.ScalarNode, event.value, event.implicit)
    return yaml.ScalarNode(
        tag,
        event.value,
        _mark(event.start_mark),
        _mark(event.end_mark),
        style=event.style or None,  # libyaml: "" for plain
    )


def _collection(
    loader: yaml.SafeLoader, event: yaml.SequenceStartEvent | yaml.MappingStartEvent, text: str
) -> _Collection:
    tag = event.tag
    start = _mark(event.start_mark)
    if isinstance(event, yaml.SequenceStartEvent):
        if tag is None or tag == "!":
            tag = _resolve(loader, yaml.SequenceNode, None, event.implicit)
        flow_style = event.flow_style
        if flow_style is False and _indentless(event, text):
            flow_style = None  # as PyYAML's parser has it
        return yaml.SequenceNode(tag, [], start, None, flow_style=flow_style)
    if tag is None or tag == "!":
        tag = _resolve(loader, yaml.MappingNode, None, event.implicit)
    return yaml.MappingNode(tag, [], start, None, flow_style=event.flow_style)


def _indentless(event: yaml.SequenceStartEvent, text: str) -> bool:
    """Is this block sequence an indentless one (its ``-`` at its key's column)?

    Both parsers end such an event after its first ``-`` (the block-entry
    token); an indented block sequence's event ends where its zero-width
    block-start token is, at the ``-`` itself, which whitespace precedes.
    """
    end = event.end_mark
    return end is not None and end.index > 0 and text[end.index - 1 : end.index] == "-"


_LINE_BREAKS = "\n\r\x85\u2028\u2029"  # what PyYAML's reader counts as line breaks


def _end_mark(mark: Mark | None, text: str) -> Mark | None:
    """A collection's end as PyYAML's parser marks it.

    At the end of a text whose last line has no line break, libyaml moves its
    mark to the start of a line after it; PyYAML stays on the last line.
    """
    if mark is None or mark.column != 0 or mark.index != len(text) or mark.line == 0:
        return mark
    if text[-1:] in _LINE_BREAKS:
        return mark
    last_break = max(text.rfind(c) for c in _LINE_BREAKS)
    fixed = copy.copy(mark)
    fixed.line, fixed.column = mark.line - 1, mark.index - last_break - 1
    return fixed


# PyYAML's stubs leave these untyped (and type marks as C or Python marks).


def _next_event(loader: yaml.SafeLoader) -> yaml.Event:
    return cast(yaml.Event, loader.get_event())  # type: ignore[no-untyped-call]


def _resolve(loader: yaml.SafeLoader, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
    return cast(str, loader.resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


def _mark(mark: object) -> Mark | None:
    return cast("Mark | None", mark)


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else 0
