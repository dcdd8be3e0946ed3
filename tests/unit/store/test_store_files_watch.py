"""FileStore watching: edits on disk show up, with per-file last-good semantics."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from store_testing import (
    DESTINATION_RULE_REVIEWS,
    SERVICE_REVIEWS,
    docs,
    line_of,
    next_revision,
    settle,
    virtual_service,
    wait_until,
)

from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.loader import LoadResult, load_text
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store import FileStore

VS = ResourceKey("VirtualService", "default", "reviews")
DR = ResourceKey("DestinationRule", "default", "reviews")
SVC = ResourceKey("Service", "default", "reviews")


def subset_of(resource: Resource | None) -> str:
    assert resource is not None
    subset: str = resource.raw["spec"]["http"][0]["route"][0]["destination"]["subset"]
    return subset


async def test_new_edited_and_deleted_files_are_seen(store: FileStore, config_dir: Path) -> None:
    await store.start()
    assert store.revision == 0 and store.list() == []
    revisions = [store.revision]

    nested = config_dir / "default" / "reviews"
    nested.mkdir(parents=True)
    (nested / "vs.yaml").write_text(virtual_service(subset="v1"))
    revisions.append(await next_revision(store, revisions[-1]))
    assert subset_of(store.get(VS)) == "v1"

    # An in-place edit of the same size: only the racy re-read can notice it.
    (nested / "vs.yaml").write_text(virtual_service(subset="v2"))
    revisions.append(await next_revision(store, revisions[-1]))
    assert subset_of(store.get(VS)) == "v2"

    (config_dir / "dr.yaml").write_text(DESTINATION_RULE_REVIEWS)
    revisions.append(await next_revision(store, revisions[-1]))
    assert store.get(DR) is not None

    (nested / "vs.yaml").unlink()
    revisions.append(await next_revision(store, revisions[-1]))
    assert store.get(VS) is None
    assert [str(r.key) for r in store.list()] == [str(DR)]
    assert revisions == sorted(set(revisions)), "revisions must grow strictly"


async def test_atomic_replace_by_an_editor_is_seen(store: FileStore, config_dir: Path) -> None:
    path = config_dir / "vs.yaml"
    path.write_text(virtual_service(subset="v1"))
    await store.start()
    first = store.revision
    tmp = config_dir / ".vs.yaml.tmp"
    tmp.write_text(virtual_service(subset="v2"))
    os.replace(tmp, path)
    assert await next_revision(store, first) == first + 1
    assert subset_of(store.get(VS)) == "v2"


async def test_comment_only_edit_does_not_bump(store: FileStore, config_dir: Path) -> None:
    path = config_dir / "reviews.yaml"
    path.write_text(docs(SERVICE_REVIEWS, virtual_service()))
    await store.start()
    before = store.revision
    served = store.get(VS)
    assert served is not None and served.source is not None
    old_line = served.source.line

    path.write_text("# reviews routing, owned by the bookinfo team\n\n" + path.read_text())

    def moved() -> bool:
        now = store.get(VS)
        return now is not None and now.source is not None and now.source.line == old_line + 2

    # The file was re-read (the line numbers moved) but the configuration is the same.
    await wait_until(moved, "the re-read of the commented file")
    await settle(store)
    assert store.revision == before
    assert store.diagnostics() == []


async def test_an_edit_keeps_the_objects_of_unchanged_documents(
    store: FileStore, config_dir: Path
) -> None:
    path = config_dir / "reviews.yaml"
    path.write_text(docs(SERVICE_REVIEWS, virtual_service(subset="v1")))
    await store.start()
    service, routes = store.get(SVC), store.get(VS)
    assert service is not None and routes is not None
    before = store.revision

    path.write_text(docs(SERVICE_REVIEWS, virtual_service(subset="v2")))
    await next_revision(store, before)
    # The Service reads exactly as before: the very same object is served, so
    # whatever compares objects downstream passes it by identity.
    assert store.get(SVC) is service
    assert subset_of(store.get(VS)) == "v2" and store.get(VS) is not routes
    assert [r for r in store.list() if r.key == SVC] == [service]


async def test_broken_edit_keeps_last_good_objects_then_fix_clears_it(
    store: FileStore, config_dir: Path
) -> None:
    path = config_dir / "reviews.yaml"
    path.write_text(docs(DESTINATION_RULE_REVIEWS, virtual_service(subset="v1")))
    (config_dir / "service.yaml").write_text(SERVICE_REVIEWS)
    await store.start()
    good_rev = store.revision
    good_vs, good_dr = store.get(VS), store.get(DR)

    # Break the file: the DestinationRule is removed and the VirtualService gets a typo.
    broken = virtual_service(subset="v2").replace("host: reviews", "hots: reviews")
    path.write_text(broken)
    await wait_until(lambda: bool(store.diagnostics()), "the error to be reported")
    errors = store.diagnostics()
    assert all(e.is_error for e in errors)
    [error] = [e for e in errors if e.field.endswith(".hots")]
    assert error.source is not None
    assert (error.source.file, error.source.line) == (str(path), line_of(broken, "hots:"))
    assert error.field == "spec.http[0].route[0].destination.hots"
    assert (error.kind, error.namespace, error.name) == ("VirtualService", "default", "reviews")
    # Both objects of the last good load are still served, unchanged; no bump.
    assert store.get(VS) is good_vs and store.get(DR) is good_dr
    await settle(store)
    assert store.revision == good_rev
    [status] = [s for s in store.files_status() if s["file"] == str(path)]
    assert status["state"] == "error" and status["serving"] is True
    assert status["resources"] == [str(DR), str(VS)]

    # Fix it differently: the new objects replace the old ones and the error clears.
    path.write_text(virtual_service(subset="v2"))
    assert await next_revision(store, good_rev) == good_rev + 1
    assert store.diagnostics() == []
    assert subset_of(store.get(VS)) == "v2"
    assert store.get(DR) is None
    assert store.get(SVC) is not None


async def test_deleting_a_broken_file_removes_its_last_good_objects(
    store: FileStore, config_dir: Path
) -> None:
    path = config_dir / "reviews.yaml"
    path.write_text(virtual_service())
    await store.start()
    path.write_text("spec: [unterminated\n")
    await wait_until(lambda: bool(store.diagnostics()), "the syntax error")
    assert store.get(VS) is not None
    rev = store.revision
    path.unlink()
    assert await next_revision(store, rev) == rev + 1
    assert store.get(VS) is None
    assert store.diagnostics() == []


async def test_warnings_of_a_good_file_are_kept(config_dir: Path) -> None:
    def loader_with_a_warning(text: str, filename: str) -> LoadResult:
        # The real loader, plus a warning for documents carrying a marker comment.
        result = load_text(text, filename)
        if "# deprecated" not in text:
            return result
        warning = Diagnostic(Severity.WARNING, "deprecated", SourceRef(filename, 1))
        return LoadResult(result.resources, (*result.diagnostics, warning))

    path = config_dir / "reviews.yaml"
    path.write_text("# deprecated\n" + virtual_service())
    store = FileStore(config_dir, poll_interval=0.01, load_text=loader_with_a_warning)
    try:
        await store.start()
        assert store.get(VS) is not None  # a warning does not make the file fail
        assert [d.format() for d in store.diagnostics()] == [f"{path}:1: warning: deprecated"]
        assert store.files_status()[0]["state"] == "ok"
        path.write_text(virtual_service())
        await wait_until(lambda: not store.diagnostics(), "the warning to clear")
    finally:
        await store.close()


async def test_a_burst_of_changes_is_one_revision(store: FileStore, config_dir: Path) -> None:
    (config_dir / "vs.yaml").write_text(virtual_service())
    assert await store.poll()
    rev = store.revision
    (config_dir / "vs.yaml").write_text(virtual_service(subset="v2"))
    (config_dir / "dr.yaml").write_text(DESTINATION_RULE_REVIEWS)
    (config_dir / "svc.yaml").write_text(SERVICE_REVIEWS)
    assert await store.poll()
    assert store.revision == rev + 1
    assert len(store.list()) == 3
    assert not await store.poll()  # nothing new: no bump
    assert store.revision == rev + 1


async def test_duplicate_winner_removed_promotes_the_other(
    store: FileStore, config_dir: Path
) -> None:
    (config_dir / "a.yaml").write_text(virtual_service(subset="v1"))
    (config_dir / "b.yaml").write_text(virtual_service(subset="v2"))
    await store.start()
    assert subset_of(store.get(VS)) == "v1"
    assert len(store.diagnostics()) == 1
    rev = store.revision
    (config_dir / "a.yaml").unlink()
    await next_revision(store, rev)
    assert subset_of(store.get(VS)) == "v2"
    assert store.diagnostics() == []


async def test_wait_for_change_wakes_all_waiters_on_a_file_edit(
    store: FileStore, config_dir: Path
) -> None:
    await store.start()
    waiters = [asyncio.create_task(next_revision(store, 0)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    (config_dir / "vs.yaml").write_text(virtual_service())
    assert await asyncio.gather(*waiters) == [1, 1, 1]


async def test_close_stops_polling(store: FileStore, config_dir: Path) -> None:
    await store.start()
    await store.close()
    scans = store.scans
    (config_dir / "vs.yaml").write_text(virtual_service())
    # A second store on the same tree is the clock: once it has seen the file
    # twice over, the closed one would have too if it were still polling.
    witness = FileStore(config_dir, poll_interval=0.01, covered_poll_interval=0.01)
    try:
        await witness.start()
        await settle(witness)
        assert witness.get(VS) is not None
        assert store.scans == scans and store.get(VS) is None
    finally:
        await witness.close()
    assert await store.poll()  # polling by hand still works after close
    assert store.get(VS) is not None


async def test_same_stat_edit_within_the_racy_window_is_seen(
    store: FileStore, config_dir: Path
) -> None:
    # On file systems with coarse timestamps, an in-place edit of the same size
    # within one clock tick leaves (mtime, size, inode) unchanged. Simulate it.
    path = config_dir / "vs.yaml"
    path.write_text(virtual_service(subset="v1"))
    before = path.stat()
    assert await store.poll()
    path.write_text(virtual_service(subset="v2"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
        before.st_mtime_ns,
        before.st_size,
        before.st_ino,
    )
    assert await store.poll()
    assert subset_of(store.get(VS)) == "v2"
