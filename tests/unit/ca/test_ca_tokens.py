"""TokenRegistry: registration, replacement, revocation and token files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilotfish.ca import Owner, TokenFileError, TokenRegistry
from pilotfish.ca.tokens import token_digest


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


def test_tokens_are_kept_hashed_and_persisted_0600(tmp_path: Path) -> None:
    store = tmp_path / "ca" / "pod-tokens.json"
    tokens = TokenRegistry(store)
    token = tokens.register("default", "bookinfo", "productpage-v1-0")
    text = store.read_text()
    assert token not in text
    assert token_digest(token) in text
    assert store.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca").stat().st_mode & 0o777 == 0o700
    assert token not in repr(tokens)
    # A restarted control plane still knows it.
    again = TokenRegistry(store)
    assert again.lookup(token) == Owner("default", "bookinfo", "productpage-v1-0")
    assert again.lookup(token_digest(token)) is None  # the digest is not a token


def test_revocations_are_persisted(tmp_path: Path) -> None:
    store = tmp_path / "pod-tokens.json"
    tokens = TokenRegistry(store)
    a = tokens.register("default", "sa", "a")
    b = tokens.register("default", "sa", "b")
    c = tokens.register("default", "sa", "c")
    tokens.revoke("a")
    assert tokens.retain_pods({"c"}) == 1
    again = TokenRegistry(store)
    assert again.lookup(a) is None and again.lookup(b) is None
    assert again.lookup(c) is not None


def test_operator_tokens_are_not_written_to_the_store(tmp_path: Path) -> None:
    listed = tmp_path / "tokens.yaml"
    listed.write_text("- {token: operator-secret, namespace: default}\n")
    store = tmp_path / "pod-tokens.json"
    tokens = TokenRegistry(store)
    tokens.load_file(listed)
    tokens.register("default", "sa", "p")
    assert tokens.lookup("operator-secret") is not None
    assert token_digest("operator-secret") not in store.read_text()
    assert TokenRegistry(store).lookup("operator-secret") is None


@pytest.mark.parametrize("text", ["not json", '{"tokens": [{"sha256": "short"}]}', "[]"])
def test_a_damaged_store_is_ignored(tmp_path: Path, text: str) -> None:
    store = tmp_path / "pod-tokens.json"
    store.write_text(text)
    tokens = TokenRegistry(store)
    assert len(tokens) == 0
    tokens.register("default", "sa", "p")  # and it is rewritten whole
    assert len(TokenRegistry(store)) == 1
