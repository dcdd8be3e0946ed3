"""The golden-file harness itself: compare, update, stale detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from golden import assert_golden, dump_yaml, remove_stale
from pilotfish import ir

FAILED = pytest.fail.Exception


def test_dump_is_sorted_block_yaml() -> None:
    assert dump_yaml({"b": [1], "a": {"d": 1, "c": 2}}) == "a:\n  c: 2\n  d: 1\nb:\n- 1\n"


def test_protos_and_ir_become_plain_data() -> None:
    proto = cluster_pb2.Cluster(name="c", type=cluster_pb2.Cluster.EDS)
    assert dump_yaml(proto) == "name: c\ntype: EDS\n"
    assert dump_yaml([ir.Endpoint("h", 1)]) == "- address: h\n  port: 1\n"


def test_missing_golden_fails_then_update_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "out" / "case.yaml"
    with pytest.raises(FAILED, match="missing"):
        assert_golden(path, {"a": 1}, update=False)
    assert_golden(path, {"a": 1}, update=True)
    assert path.read_text() == "a: 1\n"
    assert_golden(path, {"a": 1}, update=False)


def test_mismatch_fails_with_a_diff_and_update_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "case.yaml"
    path.write_text("a: 1\n")
    with pytest.raises(FAILED, match=r"(?s)-a: 1.*\+a: 2"):
        assert_golden(path, {"a": 2}, update=False)
    assert path.read_text() == "a: 1\n"
    assert_golden(path, {"a": 2}, update=True)
    assert path.read_text() == "a: 2\n"


def test_remove_stale(tmp_path: Path) -> None:
    kept = tmp_path / "kept.yaml"
    stale = tmp_path / "sub" / "stale.yaml"
    other = tmp_path / "input.txt"
    for path in (kept, stale, other):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x: 1\n")
    with pytest.raises(FAILED, match=r"stale\.yaml"):
        remove_stale(tmp_path, {kept}, update=False)
    assert stale.exists()
    remove_stale(tmp_path, {kept}, update=True)
    assert not stale.exists() and kept.exists() and other.exists()
    remove_stale(tmp_path, {kept}, update=False)
