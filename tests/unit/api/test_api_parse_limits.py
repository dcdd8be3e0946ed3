"""Parse limits: every limit refuses its input early, with file, line and limit.

Memory is asserted with tracemalloc (deterministic); before these limits the
alias bomb below grew a control plane past 1.8 GB and ``analyze`` past 3.7 GB.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from bench.fuzz_corpus import (
    ALIAS_BOMB,
    BILLION_LAUGHS,
    deep_json,
    deep_yaml_block,
    deep_yaml_flow,
    many_documents,
)
from click.testing import CliRunner

from pilotfish.api import yamlcompose
from pilotfish.api.limits import DEFAULT_LIMITS, ParseLimits
from pilotfish.api.loader import LoadResult, load_file, load_text
from pilotfish.api.yamlcompose import ParseLimitError, compose_documents
from pilotfish.cli.analyze import analyze
from pilotfish.model.mesh_config import MeshConfigError, parse_mesh_config

REPO = Path(__file__).resolve().parents[3]
T = TypeVar("T")


def peak_mib(run: Callable[[], T]) -> tuple[T, float]:
    """``run()``'s result and the peak of memory it allocated, MiB."""
    tracemalloc.start()
    try:
        result = run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak / (1024 * 1024)


def only_error(result: LoadResult) -> str:
    """The one diagnostic of ``result``, formatted (it must be an error)."""
    assert [d.is_error for d in result.diagnostics] == [True], [
        d.format() for d in result.diagnostics
    ]
    assert result.resources == ()
    return result.diagnostics[0].format()


# -- aliases --------------------------------------------------------------------------


def test_alias_bomb_is_refused_while_composing() -> None:
    result, peak = peak_mib(lambda: load_text(ALIAS_BOMB, "mesh/bomb.yaml"))
    # Aliases add 90 (b), 819 (c), 7380 (d) nodes: the first alias of d in e
    # (line 7) crosses 10 000.
    assert only_error(result) == (
        "mesh/bomb.yaml:7: YAML aliases expand to more than 10000 nodes (limit)"
    )
    assert peak < 5


def test_billion_laughs_is_refused() -> None:
    result, peak = peak_mib(lambda: load_text(BILLION_LAUGHS, "laughs.yaml"))
    assert only_error(result) == (
        "laughs.yaml:5: YAML aliases expand to more than 10000 nodes (limit)"
    )
    assert peak < 5


def test_merge_key_bomb_is_refused() -> None:
    text = "m0: &m0 {a: 1, b: 2}\n" + "".join(
        f"m{i}: &m{i} {{<<: *m{i - 1}, x: *m{i - 1}, y: *m{i - 1}}}\n" for i in range(1, 12)
    )
    message = only_error(load_text(text, "merge.yaml"))
    assert message.endswith("YAML aliases expand to more than 10000 nodes (limit)")


def test_aliases_of_a_long_string_are_bounded_in_characters() -> None:
    text = f'a: &a "{"x" * 100_000}"\nb: [{", ".join(["*a"] * 11)}]\n'
    result, peak = peak_mib(lambda: load_text(text, "chars.yaml"))
    assert only_error(result) == (
        "chars.yaml:2: YAML aliases expand to more than 1048576 characters of text (limit)"
    )
    assert peak < 10


def test_too_many_alias_uses() -> None:
    text = f"a: &a x\nb: [{', '.join(['*a'] * 1001)}]\n"
    assert only_error(load_text(text, "many.yaml")) == (
        "many.yaml:2: more than 1000 YAML aliases (limit)"
    )


def test_a_recursive_alias_is_refused() -> None:
    assert only_error(load_text("a: &a [1, *a]\n", "loop.yaml")) == (
        "loop.yaml:1: recursive YAML alias *a (used inside its own anchor)"
    )


def test_modest_aliases_still_load() -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: reviews}\n"
        "spec:\n  host: reviews\n  subsets:\n"
        "  - name: v1\n    labels: &labels {app: reviews}\n"
        "  - name: v2\n    labels: *labels\n"
    )
    result = load_text(text, "dr.yaml")
    assert result.ok, [d.format() for d in result.diagnostics]
    (dr,) = result.resources
    assert dr.raw["spec"]["subsets"][1]["labels"] == {"app": "reviews"}


# -- nesting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (deep_yaml_flow(5000), 1),
        (deep_yaml_block(1000), 101),  # 5000 levels of indentation are 12 MB
        (deep_json(5000), 1),
    ],
    ids=["yaml-flow-5000", "yaml-block-1000", "json-5000"],
)
def test_deep_nesting_is_refused_at_level_101(text: str, line: int) -> None:
    result, peak = peak_mib(lambda: load_text(text, "deep.yaml"))
    assert only_error(result) == f"deep.yaml:{line}: nesting deeper than 100 levels (limit)"
    assert peak < 5


BEYOND_LIBYAML = [
    deep_json(5000),
    deep_yaml_flow(5000),
    "x: [" + "\n  [" * 2000 + "]" * 2000 + "]\n",  # the level crossing ours on line 100
    "a: 1\n---\nb: " + "[" * 3000 + "x" + "]" * 3000 + "\n",  # a document before it
    "k: [[[ [a, b]: c, " + "[" * 1500 + "]" * 1500 + "]]]",  # an implicit key on the way
    'bad: "unterminated ' + "[" * 2000,  # not a nesting at all: a syntax error
]


@pytest.mark.parametrize("text", BEYOND_LIBYAML, ids=range(len(BEYOND_LIBYAML)))
def test_nesting_beyond_libyaml_is_answered_as_pyyaml_would_without_it(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libyaml stops at 1000 flow levels before its first event; the prefix it
    # read is composed again instead of the whole text by PyYAML's slow scanner.
    fast = [d.format() for d in load_text(text, "deep.yaml").diagnostics]
    monkeypatch.setattr(yamlcompose, "_libyaml_depth_cut", lambda exc, limits: None)
    slow = [d.format() for d in load_text(text, "deep.yaml").diagnostics]
    assert fast == slow and fast


def test_nesting_beyond_libyaml_never_reaches_pyyaml_s_scanner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(text: str) -> None:
        raise AssertionError("the pure-Python parser was used")

    monkeypatch.setattr(yamlcompose.yaml, "SafeLoader", refuse)
    for text in BEYOND_LIBYAML[:3]:
        assert "nesting deeper than 100 levels" in only_error(load_text(text, "deep.yaml"))


def test_depth_100_is_accepted_and_101_refused() -> None:
    (root,) = compose_documents("[" * 100 + "]" * 100)
    assert isinstance(root, yaml.SequenceNode)
    with pytest.raises(ParseLimitError, match="nesting deeper than 100 levels"):
        list(compose_documents("[" * 101 + "]" * 101))


def test_depth_through_an_alias_counts_the_aliased_height() -> None:
    text = "a: &a " + "[" * 60 + "]" * 60 + "\nb: " + "[" * 50 + "*a" + "]" * 50 + "\n"
    assert only_error(load_text(text, "alias-deep.yaml")) == (
        "alias-deep.yaml:2: nesting deeper than 100 levels (limit)"
    )


# -- size, nodes, documents --------------------------------------------------------------


def test_text_larger_than_the_limit_is_not_parsed() -> None:
    text = "#" * (DEFAULT_LIMITS.max_file_bytes + 1)
    assert only_error(load_text(text, "big.yaml")) == (
        "big.yaml: file is larger than 4194304 bytes (limit)"
    )


def test_size_counts_utf8_bytes_not_characters() -> None:
    limits = ParseLimits(max_file_bytes=10)
    assert load_text("# " + "é" * 4, "ok.yaml", limits).ok  # 10 bytes
    assert not load_text("# " + "é" * 5, "big.yaml", limits).ok  # 12 bytes


def test_a_huge_file_is_never_read(tmp_path: Path) -> None:
    big = tmp_path / "huge.yaml"
    with big.open("wb") as fh:  # sparse: 8 GiB on paper, nothing on disk
        fh.truncate(8 * 1024**3)
    result, peak = peak_mib(lambda: load_file(big))
    assert only_error(result) == f"{big}: file is larger than 4194304 bytes (limit)"
    assert peak < 1


def test_too_many_nodes() -> None:
    limits = ParseLimits(max_nodes=1000)
    text = "x: [" + ",".join(["1"] * 1000) + "]\n"
    assert only_error(load_text(text, "nodes.yaml", limits)) == (
        "nodes.yaml:1: more than 1000 YAML nodes (limit)"
    )


def test_too_many_documents() -> None:
    assert only_error(load_text("---\n" * 10_001, "docs.yaml")) == (
        "docs.yaml:10001: more than 10000 YAML documents (limit)"
    )


def test_too_many_resources_in_a_list() -> None:
    limits = ParseLimits(max_documents=3)
    text = "apiVersion: v1\nkind: List\nitems:\n" + "- {}\n" * 4
    assert only_error(load_text(text, "list.yaml", limits)) == (
        "list.yaml:7: more than 3 resources (limit)"
    )


def test_documents_before_the_limit_still_load() -> None:
    limits = ParseLimits(max_documents=2)
    result = load_text(many_documents(3), "three.yaml", limits)
    assert [r.name for r in result.resources] == ["s0", "s1"]
    assert [d.format() for d in result.diagnostics] == [
        "three.yaml:11: more than 2 YAML documents (limit)"
    ]


def test_an_integer_too_long_to_print_is_a_field_error() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n"
    text += "  - port: " + "9" * 5000 + "\n"
    message = load_text(text, "int.yaml").diagnostics[0].format()
    assert message.startswith("int.yaml:6: Service default/web: spec.ports[0].port: ")
    assert "cannot read this value as int: Exceeds the limit (4300 digits)" in message


def test_binary_values_are_refused() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {a: !!binary aGk=}}\n"
    message = load_text(text, "bin.yaml").diagnostics[0].format()
    assert message == (
        "bin.yaml:3: Service default/web: metadata.labels.a: "
        "binary values (!!binary) are not supported"
    )


# -- the settings object -------------------------------------------------------------------


def test_limits_are_frozen_and_checked() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_LIMITS.max_depth = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="max_nodes must be a positive integer"):
        ParseLimits(max_nodes=0)
    with pytest.raises(ValueError, match="max_depth must be at most 400"):
        ParseLimits(max_depth=401)
    assert DEFAULT_LIMITS.for_body().max_nodes == DEFAULT_LIMITS.max_body_nodes


def _config_files(*roots: Path) -> list[Path]:
    return sorted(
        p for root in roots for p in root.rglob("*") if p.suffix in (".yaml", ".yml", ".json")
    )


SAMPLES, TESTDATA = REPO / "samples", REPO / "tests" / "testdata"


def test_composes_exactly_like_pyyaml_on_every_sample_and_test_file() -> None:
    """Same nodes (tags, values, styles, positions) as ``yaml.compose_all``."""

    def shape(node: yaml.Node) -> object:
        marks = (node.start_mark.index, node.end_mark.index)
        if isinstance(node, yaml.ScalarNode):
            return (node.tag, node.value, node.style, marks)
        if isinstance(node, yaml.MappingNode):
            pairs = [(shape(k), shape(v)) for k, v in node.value]
            return (node.tag, pairs, node.flow_style, marks)
        return (node.tag, [shape(v) for v in node.value], node.flow_style, marks)

    # Inputs only: the translation goldens (tests/testdata/translate/out) are
    # large, plain block YAML and would only make this slow.
    files = _config_files(SAMPLES, TESTDATA / "api", TESTDATA / "translate" / "in")
    assert len(files) > 30
    for path in files:
        text = path.read_text()
        ours = [shape(n) for n in compose_documents(text)]
        theirs = [shape(n) for n in yaml.compose_all(text, Loader=yaml.SafeLoader)]
        assert ours == theirs, path


def test_every_sample_and_test_file_is_within_the_limits() -> None:
    # Every file a user or a test loads as configuration; the goldens under
    # */out are dumps the tests compare against, never loaded as config.
    inputs = [p for p in _config_files(SAMPLES, TESTDATA) if "out" not in p.parts]
    assert len(inputs) > 30
    for path in inputs:
        for diagnostic in load_file(path).diagnostics:
            assert "(limit)" not in diagnostic.message, diagnostic.format()


def test_the_mesh_config_file_has_the_same_limits() -> None:
    with pytest.raises(MeshConfigError) as caught:
        parse_mesh_config(BILLION_LAUGHS, "mesh.yaml")
    assert str(caught.value) == (
        "mesh.yaml:5: YAML aliases expand to more than 10000 nodes (limit)"
    )


# -- pilotfish analyze ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bomb.yaml", ALIAS_BOMB, "bomb.yaml:7: YAML aliases expand to more than 10000 nodes"),
        (
            "laughs.yaml",
            BILLION_LAUGHS,
            "laughs.yaml:5: YAML aliases expand to more than 10000 nodes",
        ),
        ("deep.yaml", deep_yaml_flow(5000), "deep.yaml:1: nesting deeper than 100 levels"),
        ("deep.json", deep_json(5000), "deep.json:1: nesting deeper than 100 levels"),
        ("docs.yaml", "---\n" * 10_001, "docs.yaml:10001: more than 10000 YAML documents"),
    ],
)
def test_analyze_exits_1_with_the_limit_and_no_traceback(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    (tmp_path / name).write_text(text)
    result = CliRunner().invoke(analyze, [str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert lines[0] == f"{tmp_path}/{expected} (limit)"
    assert lines[-1] == "1 error, 0 warnings in 1 file"
    assert "Traceback" not in result.output


def test_analyze_refuses_an_oversized_file_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(DEFAULT_LIMITS.max_file_bytes + 1)
    result = CliRunner().invoke(analyze, [str(big)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[0] == f"{big}: file is larger than 4194304 bytes (limit)"


def _full_shape(node: yaml.Node) -> object:
    """Tags, values, styles and every mark's index, line and column."""
    marks = tuple(
        (m.index, m.line, m.column) for m in (node.start_mark, node.end_mark) if m is not None
    )
    if isinstance(node, yaml.ScalarNode):
        return (node.tag, node.value, node.style, marks)
    if isinstance(node, yaml.MappingNode):
        pairs = [(_full_shape(k), _full_shape(v)) for k, v in node.value]
        return (node.tag, pairs, node.flow_style, marks)
    return (node.tag, [_full_shape(v) for v in node.value], node.flow_style, marks)


@pytest.mark.parametrize(
    "text",
    [
        "a: b\n",  # a plain scalar's style (libyaml: "")
        "key:\n- a\n- b\n",  # an indentless sequence (libyaml: flow_style False)
        "key:\n  - a\n  - b\n",  # an indented one stays block
        "a:\n  b: c",  # no final line break: the collections' end marks
        "- a\n- b",
        "a:\r\n  - [1, 2]\r\n  - {x: y}",
        "a: b\tc\n",  # a tab in a plain scalar: the pure-Python parser's
        "a: b\n\ufeff---\nc: d\n",  # an inner byte-order mark: likewise
        "first: 1\n---\nsecond: [1, 2\n",  # an error after a good document
    ],
)
def test_libyaml_events_compose_like_pyyaml(text: str) -> None:
    assert yamlcompose._FAST_LOADER is not None, "PyYAML without libyaml: the fast path is untested"

    def compose(parse: Callable[[], Iterator[yaml.Node]]) -> tuple[list[object], str]:
        shapes: list[object] = []
        try:
            for node in parse():
                shapes.append(_full_shape(node))
        except yaml.YAMLError as exc:
            return shapes, str(exc)
        return shapes, ""

    ours = compose(lambda: compose_documents(text))
    theirs = compose(lambda: yaml.compose_all(text, Loader=yaml.SafeLoader))
    assert ours == theirs
