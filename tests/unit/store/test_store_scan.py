"""The file-finding rules: which names count, and precedence between files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.store._scan import is_config_name, order_of


@pytest.mark.parametrize("name", ["vs.yaml", "vs.yml", "vs.json", "a.b.yaml"])
def test_config_names(name: str) -> None:
    assert is_config_name(name)


@pytest.mark.parametrize(
    "name",
    [".vs.yaml", ".#vs.yaml", "#vs.yaml#", "vs.yaml~", ".vs.yaml.swp", "vs.yaml.orig", "vs.txt"],
)
def test_hidden_and_editor_names_are_not_config(name: str) -> None:
    assert not is_config_name(name)


def test_order_is_root_first_then_relative_path() -> None:
    roots = [Path("/etc/mesh/override.yaml"), Path("/etc/mesh/base")]
    paths = [
        "/etc/mesh/base/z.yaml",
        "/etc/mesh/base/a/b.yaml",
        "/etc/mesh/override.yaml",
        "/etc/mesh/base/a.yaml",
    ]
    assert sorted(paths, key=lambda p: order_of(roots, p)) == [
        "/etc/mesh/override.yaml",
        "/etc/mesh/base/a/b.yaml",
        "/etc/mesh/base/a.yaml",
        "/etc/mesh/base/z.yaml",
    ]


def test_a_sibling_with_a_common_prefix_is_not_inside_the_root() -> None:
    roots = [Path("/srv/conf")]
    assert order_of(roots, "/srv/conf/x.yaml") == (0, ("x.yaml",))
    assert order_of(roots, "/srv/conf2/x.yaml") == (1, ("/srv/conf2/x.yaml",))
