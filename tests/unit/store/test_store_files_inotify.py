"""FileStore hears writes through inotify, and folds an edit in place of a full merge."""

from __future__ import annotations

import os
import select
from pathlib import Path

from store_testing import (
    DESTINATION_RULE_REVIEWS,
    SERVICE_REVIEWS,
    docs,
    next_revision,
    resource,
    virtual_service,
    wait_until,
)

from pilotfish.api.loader import LoadResult, load_text
from pilotfish.api.resource import ResourceKey
from pilotfish.store import FileStore, _merge, _scan
from pilotfish.store._inotify import DirWatch, Events

VS = ResourceKey("VirtualService", "default", "reviews")
DR = ResourceKey("DestinationRule", "default", "reviews")
# Polls so rare that a test waiting for one would time out (store_testing.DEADLINE is 5 s).
NO_POLL = 600.0


def subset_of(store: FileStore) -> str:
    found = store.get(VS)
    assert found is not None
    subset: str = found.raw["spec"]["http"][0]["route"][0]["destination"]["subset"]
    return subset


def replace(path: Path, text: str) -> None:
    """Write as editors and the bench do: a hidden temporary file renamed into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def test_writes_are_seen_without_waiting_for_a_poll(config_dir: Path) -> None:
    (config_dir / "vs.yaml").write_text(virtual_service(subset="v1"))
    store = FileStore(config_dir, poll_interval=NO_POLL)
    try:
        await store.start()
        assert store.watched_directories == {str(config_dir)}
        polls = store.scans
        rev = store.revision

        replace(config_dir / "vs.yaml", virtual_service(subset="v2"))  # renamed into place
        rev = await next_revision(store, rev)
        assert subset_of(store) == "v2"

        (config_dir / "vs.yaml").write_text(virtual_service(subset="v3"))  # rewritten in place
        rev = await next_revision(store, rev)
        assert subset_of(store) == "v3"

        (config_dir / "dr.yaml").write_text(DESTINATION_RULE_REVIEWS)  # a new file
        rev = await next_revision(store, rev)
        assert store.get(DR) is not None

        (config_dir / "dr.yaml").unlink()
        await next_revision(store, rev)
        assert store.get(DR) is None
        # Each was one read of the heard file, never a scan of the tree.
        assert store.scans == polls + 4
    finally:
        await store.close()


async def test_a_new_directory_is_scanned_and_then_watched(config_dir: Path) -> None:
    store = FileStore(config_dir, poll_interval=NO_POLL)
    try:
        await store.start()
        nested = config_dir / "default"
        nested.mkdir()  # heard: a rescan, which starts watching it
        await wait_until(
            lambda: str(nested) in store.watched_directories, "the new directory watched"
        )
        (nested / "vs.yaml").write_text(virtual_service(subset="v1"))
        await next_revision(store, store.revision)
        assert subset_of(store) == "v1"
        nested_file = nested / "vs.yaml"
        nested_file.unlink()
        nested.rmdir()
        await wait_until(lambda: store.get(VS) is None, "the removed file's objects gone")
        await wait_until(
            lambda: store.watched_directories == {str(config_dir)}, "the old directory unwatched"
        )
    finally:
        await store.close()


async def test_a_file_written_right_after_its_new_directory_is_seen(config_dir: Path) -> None:
    store = FileStore(config_dir, poll_interval=NO_POLL, covered_poll_interval=NO_POLL)
    try:
        await store.start()
        nested = config_dir / "default"
        nested.mkdir()
        # Written before the store can have watched the directory: the scan the
        # directory's creation asked for, or the one after its watch, reads it.
        (nested / "vs.yaml").write_text(virtual_service(subset="v1"))
        await next_revision(store, store.revision)
        assert subset_of(store) == "v1"
    finally:
        await store.close()


async def test_polls_are_a_backstop_while_inotify_covers_the_tree(
    config_dir: Path, tmp_path: Path
) -> None:
    (config_dir / "dr.yaml").write_text(DESTINATION_RULE_REVIEWS)
    store = FileStore(config_dir, poll_interval=0.01, covered_poll_interval=NO_POLL)
    try:
        await store.start()
        assert store.poll_rest == NO_POLL  # every directory watched, no links

        # A link to a file outside the tree: inotify hears the link, never its
        # target's writes, so polls are needed again.
        target = tmp_path / "elsewhere.yaml"
        target.write_text(virtual_service(subset="v1"))
        (config_dir / "vs.yaml").symlink_to(target)
        await wait_until(lambda: store.get(VS) is not None, "the linked file read")
        assert store.poll_rest < 1.0

        target.write_text(virtual_service(subset="v2"))  # outside the tree: polled
        await next_revision(store, store.revision)
        assert subset_of(store) == "v2"
    finally:
        await store.close()


async def test_a_heard_write_reads_only_that_file(config_dir: Path) -> None:
    parsed: list[str] = []

    def counting(text: str, filename: str) -> LoadResult:
        parsed.append(filename)
        return load_text(text, filename)

    (config_dir / "vs.yaml").write_text(virtual_service(subset="v1"))
    (config_dir / "dr.yaml").write_text(DESTINATION_RULE_REVIEWS)
    store = FileStore(config_dir, poll_interval=NO_POLL, load_text=counting)
    try:
        await store.start()
        parsed.clear()
        replace(config_dir / "vs.yaml", virtual_service(subset="v2"))
        await next_revision(store, store.revision)
        assert parsed == [str(config_dir / "vs.yaml")]
    finally:
        await store.close()


async def test_without_inotify_the_poll_still_sees_writes(config_dir: Path) -> None:
    store = FileStore(config_dir, poll_interval=0.01, inotify=False)
    try:
        await store.start()
        assert store.watched_directories == frozenset()
        assert store.poll_rest < 1.0  # polls are all there is
        (config_dir / "vs.yaml").write_text(virtual_service(subset="v1"))
        await next_revision(store, 0)
        assert subset_of(store) == "v1"
    finally:
        await store.close()


def test_dir_watch_reports_config_files_and_asks_a_rescan_for_directories(
    config_dir: Path,
) -> None:
    watch = DirWatch.open()
    assert watch is not None, "inotify is available on Linux"
    try:
        watch.sync([str(config_dir)])
        (config_dir / "a.yaml").write_text("x: 1\n")
        (config_dir / ".hidden.yaml").write_text("x: 1\n")
        (config_dir / "notes.txt").write_text("not configuration\n")
        events = Events()
        _read_ready(watch, events)
        assert events.paths == {str(config_dir / "a.yaml")} and not events.rescan

        (config_dir / "sub").mkdir()
        events = Events()
        _read_ready(watch, events)
        assert events.rescan

        watch.sync([])
        assert watch.directories == frozenset()
    finally:
        watch.close()


def _read_ready(watch: DirWatch, events: Events) -> None:
    ready, _, _ = select.select([watch.fileno()], [], [], 5.0)
    assert ready, "no inotify event within 5 s"
    watch.read(events)


def test_observe_paths_reads_changed_and_reports_gone(config_dir: Path) -> None:
    a, b = config_dir / "a.yaml", config_dir / "b.yaml"
    a.write_text(virtual_service())
    b.write_text(SERVICE_REVIEWS)
    first = _scan.observe([config_dir], {})
    known = {r.found.path: r.memo for r in first.readings}
    b.unlink()
    obs = _scan.observe_paths([str(a), str(b)], known)
    assert obs.gone == {str(b)}
    assert obs.root_problems is None  # the roots were not looked at
    # a is racy (just written) so it is re-read, with the same bytes: nothing to parse.
    assert [(r.found.path, r.parse) for r in obs.readings] == [(str(a), False)]


def test_update_replaces_objects_of_a_file_that_keeps_its_keys() -> None:
    vs1, dr = resource(virtual_service(subset="v1")), resource(DESTINATION_RULE_REVIEWS)
    vs2 = resource(virtual_service(subset="v2"))
    merged = _merge.merge(
        [_merge.Contribution("a.yaml", (vs1,)), _merge.Contribution("b.yaml", (dr,))]
    )
    updated = _merge.update(merged, {"a.yaml": ((vs1,), (vs2,))})
    assert updated is not None
    assert updated.objects[VS] is vs2 and updated.objects[DR] is dr
    assert updated.owners == merged.owners
    assert merged.objects[VS] is vs1  # the previous merge is left as it was


def test_update_declines_when_precedence_could_matter() -> None:
    vs1, dr = resource(virtual_service(subset="v1")), resource(DESTINATION_RULE_REVIEWS)
    vs2 = resource(virtual_service(subset="v2"))
    merged = _merge.merge(
        [_merge.Contribution("a.yaml", (vs1,)), _merge.Contribution("b.yaml", (dr,))]
    )
    assert _merge.update(merged, {"a.yaml": ((vs1,), (vs1, dr))}) is None  # other keys
    assert _merge.update(merged, {"a.yaml": ((vs1,), (dr,))}) is None  # another key
    assert _merge.update(merged, {"a.yaml": ((vs1,), None)}) is None  # file gone
    assert _merge.update(merged, {"c.yaml": (None, (vs2,))}) is None  # new file
    shadowed = _merge.merge(
        [_merge.Contribution("a.yaml", (vs1,)), _merge.Contribution("c.yaml", (vs2,))]
    )
    assert shadowed.duplicates
    assert _merge.update(shadowed, {"a.yaml": ((vs1,), (vs2,))}) is None  # a duplicate


async def test_folding_in_place_keeps_list_order_and_duplicates(
    store: FileStore, config_dir: Path
) -> None:
    (config_dir / "a.yaml").write_text(docs(virtual_service(subset="v1"), SERVICE_REVIEWS))
    (config_dir / "b.yaml").write_text(DESTINATION_RULE_REVIEWS)
    await store.poll()
    order = [r.key for r in store.list()]
    (config_dir / "a.yaml").write_text(docs(virtual_service(subset="v2"), SERVICE_REVIEWS))
    assert await store.poll()
    assert [r.key for r in store.list()] == order
    assert subset_of(store) == "v2"
    assert store.list("VirtualService")[0] is store.get(VS)
    # Now b.yaml defines the VirtualService too: a full merge names the duplicate.
    (config_dir / "b.yaml").write_text(docs(DESTINATION_RULE_REVIEWS, virtual_service("reviews")))
    assert not await store.poll()  # the effective set is the same (a.yaml wins)
    assert [d.message.split(":")[0] for d in store.diagnostics()] == [
        "duplicate VirtualService default/reviews"
    ]
    (config_dir / "a.yaml").write_text(docs(virtual_service(subset="v3"), SERVICE_REVIEWS))
    assert await store.poll()
    assert subset_of(store) == "v3" and len(store.diagnostics()) == 1
