"""TokenRegistry: registration, replacement, revocation and token files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilotfish.ca import Owner, TokenFileError, TokenRegistry


def test_register_and_lookup() -> None:
    tokens = TokenRegistry()
    token = tokens.register("default", "bookinfo", "productpage-1.default")
    assert len(token) >= 40
    assert tokens.lookup(token) == Owner("default", "bookinfo", "productpage-1.default")
    assert tokens.lookup("not-a-token") is None
    assert tokens.lookup("") is None
    assert token not in repr(tokens)


def test_tokens_are_random() -> None:
    tokens = TokenRegistry()
    assert len({tokens.register("default", "sa", f"pod{i}") for i in range(50)}) == 50


def test_new_token_for_a_pod_replaces_the_old_one() -> None:
    tokens = TokenRegistry()
    old = tokens.register("default", "sa", "pod-1.default")
    new = tokens.register("default", "sa", "pod-1.default")
    assert tokens.lookup(old) is None
    assert tokens.lookup(new) is not None


def test_revoke_removes_only_that_pod() -> None:
    tokens = TokenRegistry()
    a = tokens.register("default", "sa", "a.default")
    tokens.register_token("chosen-token", "other", "sb", "b.other")
    assert tokens.revoke("a.default") == 1
    assert tokens.lookup(a) is None
    assert tokens.lookup("chosen-token") == Owner("other", "sb", "b.other")
    assert tokens.revoke("a.default") == 0


def test_invalid_names_are_refused_at_registration() -> None:
    with pytest.raises(ValueError):
        TokenRegistry().register("Bad_NS", "sa", "p")


def test_load_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "- token: t1\n  namespace: default\n  serviceAccount: bookinfo\n"
        "- token: t2\n  namespace: shop\n"
    )
    tokens = TokenRegistry()
    assert tokens.load_file(path) == 2
    assert tokens.lookup("t1") == Owner("default", "bookinfo", "")
    assert tokens.lookup("t2") == Owner("shop", "default", "")


def test_load_json_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([{"token": "t", "namespace": "ns", "serviceAccount": "sa"}]))
    tokens = TokenRegistry()
    tokens.load_file(path)
    assert tokens.lookup("t") == Owner("ns", "sa", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("token: t\n", "must be a list"),
        ("- namespace: ns\n", "'token'"),
        ("- token: t\n", "'namespace'"),
        ("- token: t\n  namespace: NS!\n", "invalid namespace"),
        ("- [1]\n", "mapping"),
        ("- token: [\n", "not valid"),
    ],
)
def test_bad_files_are_refused_whole(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("- token: good\n  namespace: ns\n" + text if text.startswith("-") else text)
    tokens = TokenRegistry()
    with pytest.raises(TokenFileError, match=message):
        tokens.load_file(path)
    assert tokens.lookup("good") is None


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="cannot read"):
        TokenRegistry().load_file(tmp_path / "nope.yaml")
