"""Golden-file assertions shared by the test suites.

A golden file is the YAML dump (sorted keys, block style) of what a case
produced. ``assert_golden`` compares against it and, in update mode
(``pytest --update-golden``), rewrites it instead; ``remove_stale`` finds golden
files that no case produced any more. Review golden diffs like code.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from pilotfish.ir.dump import redact, to_plain

__all__ = ["GOLDEN_SUFFIXES", "assert_golden", "dump_yaml", "remove_stale", "to_data"]

GOLDEN_SUFFIXES = (".yaml", ".yml")


def to_data(obj: object) -> object:
    """Plain data for YAML: protos via ``MessageToDict`` (proto field names), IR
    dataclasses via ``to_plain``, containers element by element."""
    if isinstance(obj, Message):
        # MessageToDict gives OrderedDicts for Any fields: normalize them to dicts.
        return to_data(json_format.MessageToDict(obj, preserving_proto_field_name=True))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(obj)
    if isinstance(obj, Mapping):
        return {str(key): to_data(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_data(item) for item in obj]
    return obj


def dump_yaml(data: object) -> str:
    """The stable text form of ``data`` (sorted keys, block style, UTF-8); inline
    private keys are redacted, as in debug output."""
    return yaml.safe_dump(
        redact(to_data(data)),
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def assert_golden(path: Path, data: object, update: bool) -> None:
    """Assert ``data`` dumps to the contents of ``path``; with ``update``, (re)write it."""
    actual = dump_yaml(data)
    if update:
        if not path.exists() or path.read_text(encoding="utf-8") != actual:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run pytest --update-golden", pytrace=False)
    expected = path.read_text(encoding="utf-8")
    if expected != actual:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{path} (golden)",
                tofile=f"{path} (produced)",
            )
        )
        pytest.fail(
            f"output differs from golden {path} (pytest --update-golden rewrites it):\n{diff}",
            pytrace=False,
        )


def remove_stale(directory: Path, produced: Iterable[Path], update: bool) -> None:
    """Golden files under ``directory`` that no case produced: delete them with
    ``update``, otherwise fail listing them."""
    keep = {p.resolve() for p in produced}
    stale = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.suffix in GOLDEN_SUFFIXES and p.resolve() not in keep
    )
    if not stale:
        return
    if update:
        for path in stale:
            path.unlink()
        return
    listing = "\n".join(f"  {p}" for p in stale)
    pytest.fail(
        f"stale golden files no case produces (pytest --update-golden removes them):\n{listing}",
        pytrace=False,
    )
