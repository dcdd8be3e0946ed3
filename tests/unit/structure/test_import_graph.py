"""The ``pilotfish`` package's import graph has no cycles.

Every module under ``src/pilotfish`` is imported (so a module that only works
thanks to import order fails here), and its ``import`` statements, read with
``ast`` wherever they stand (module level, ``TYPE_CHECKING`` blocks, functions),
make the edges of a graph that must be acyclic. ``from pilotfish.x import y``
is an edge to ``pilotfish.x.y`` when that is a module, else to ``pilotfish.x``
(its ``__init__``). A package's ``__init__`` running before its submodules is
Python's doing, not a dependency, so it is not an edge.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pilotfish

ROOT = Path(pilotfish.__file__).parent


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _imports(name: str, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(modules[name].read_text(), str(modules[name]))
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # ``from pkg import submodule`` needs the submodule, not pkg's body.
                found.add(sub if sub in modules else base)
    edges: set[str] = set()
    for target in found:
        # ``from a.b.c import Name``: the deepest module named is the edge.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name and target.startswith("pilotfish"):
            edges.add(target)
    return edges


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_every_module_imports() -> None:
    for name in _modules():
        importlib.import_module(name)


def test_import_graph_has_no_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(name, modules) for name in modules}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_type_checking_and_submodule_imports() -> None:
    modules = _modules()
    # The runner wires the HTTP API; the API must not know the runner back.
    assert "pilotfish.controlplane.http_api" in _imports("pilotfish.controlplane.runner", modules)
    assert "pilotfish.controlplane.runner" not in _imports(
        "pilotfish.controlplane.http_api", modules
    )
