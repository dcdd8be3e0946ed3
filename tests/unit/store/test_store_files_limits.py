"""FileStore under hostile files: a file beyond a parse limit keeps its last good
objects, reports the limit, and costs bounded memory (tracemalloc)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from bench.fuzz_corpus import ALIAS_BOMB, BILLION_LAUGHS, deep_json, deep_yaml_flow
from store_testing import SERVICE_REVIEWS, virtual_service, wait_until

from pilotfish.api.limits import ParseLimits
from pilotfish.api.resource import ResourceKey
from pilotfish.store import FileStore

VS = ResourceKey("VirtualService", "default", "reviews")


def _replace(path: Path, text: str) -> None:
    """Write ``text`` over ``path`` in place (a new size: the next scan re-reads it)."""
    path.write_text(text)


def _errors(store: FileStore) -> list[str]:
    return [d.format() for d in store.diagnostics() if d.is_error]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ALIAS_BOMB, ":7: YAML aliases expand to more than 10000 nodes (limit)"),
        (BILLION_LAUGHS, ":5: YAML aliases expand to more than 10000 nodes (limit)"),
        (deep_yaml_flow(5000), ":1: nesting deeper than 100 levels (limit)"),
        (deep_json(5000), ":1: nesting deeper than 100 levels (limit)"),
        ("---\n" * 10_001, ":10001: more than 10000 YAML documents (limit)"),
    ],
    ids=["alias-bomb", "billion-laughs", "deep-yaml", "deep-json", "documents"],
)
def test_a_file_beyond_a_limit_keeps_its_last_good_objects(
    store: FileStore, config_dir: Path, text: str, expected: str
) -> None:
    path = config_dir / "reviews.yaml"
    path.write_text(virtual_service())
    store.rescan()
    good = store.get(VS)
    assert good is not None
    revision = store.revision

    _replace(path, text)
    tracemalloc.start()
    try:
        bumped = store.rescan()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert not bumped and store.revision == revision
    assert store.get(VS) is good
    assert _errors(store) == [f"{path}{expected}"]
    (status,) = store.files_status()
    assert (status["state"], status["serving"]) == ("error", True)
    assert peak < 10 * 1024 * 1024


def test_an_oversized_file_is_not_read_and_keeps_its_last_good_objects(
    store: FileStore, config_dir: Path
) -> None:
    path = config_dir / "reviews.yaml"
    path.write_text(virtual_service())
    store.rescan()
    good = store.get(VS)
    with path.open("r+b") as fh:  # sparse: 8 GiB on paper
        fh.truncate(8 * 1024**3)
    tracemalloc.start()
    try:
        store.rescan()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert store.get(VS) is good
    assert _errors(store) == [f"{path}: file is larger than 4194304 bytes (limit)"]
    assert peak < 1024 * 1024
    # Fixed: back to normal, with the new content.
    path.write_text(virtual_service(subset="v2"))
    assert store.rescan()
    assert _errors(store) == []
    current = store.get(VS)
    assert current is not None and current is not good


def test_a_new_file_beyond_a_limit_contributes_nothing(store: FileStore, config_dir: Path) -> None:
    (config_dir / "services.yaml").write_text(SERVICE_REVIEWS)
    (config_dir / "bomb.yaml").write_text(ALIAS_BOMB)
    store.rescan()
    assert [r.kind for r in store.list()] == ["Service"]
    states = {s["file"].rsplit("/", 1)[-1]: s["state"] for s in store.files_status()}
    assert states == {"bomb.yaml": "never-loaded", "services.yaml": "ok"}


async def test_the_watcher_reports_a_bomb_dropped_into_a_running_store(config_dir: Path) -> None:
    store = FileStore(config_dir, poll_interval=0.01)
    (config_dir / "reviews.yaml").write_text(virtual_service())
    await store.start()
    try:
        good = store.get(VS)
        assert good is not None
        (config_dir / "bomb.yaml").write_text(ALIAS_BOMB)
        expected = [
            f"{config_dir / 'bomb.yaml'}:7: YAML aliases expand to more than 10000 nodes (limit)"
        ]
        await wait_until(lambda: _errors(store) == expected, "the bomb's limit error")
        assert store.get(VS) is good
    finally:
        await store.close()


def test_the_store_applies_its_own_limits(config_dir: Path) -> None:
    store = FileStore(config_dir, limits=ParseLimits(max_file_bytes=100, max_depth=3))
    (config_dir / "big.yaml").write_text(virtual_service())  # ~250 bytes
    (config_dir / "deep.yaml").write_text("a: [[[[1]]]]\n")
    store.rescan()
    assert sorted(_errors(store)) == [
        f"{config_dir / 'big.yaml'}: file is larger than 100 bytes (limit)",
        f"{config_dir / 'deep.yaml'}:1: nesting deeper than 3 levels (limit)",
    ]
