"""FileStore writes: atomic apply into the first directory, and careful delete."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest
from store_testing import (
    DEADLINE,
    DESTINATION_RULE_REVIEWS,
    SERVICE_REVIEWS,
    docs,
    next_revision,
    resource,
    settle,
    virtual_service,
)

from pilotfish.api.diagnostics import Diagnostic, Severity
from pilotfish.api.loader import LoadResult, load_file, load_text
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store import FileStore, StoreConflict, StoreError
from pilotfish.store._common import same_content

VS = ResourceKey("VirtualService", "default", "reviews")
DR = ResourceKey("DestinationRule", "default", "reviews")
SVC = ResourceKey("Service", "default", "reviews")


def all_files(root: Path) -> list[str]:
    """Every file under ``root``, hidden ones included, relative and sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def loads_back_as(path: Path, expected: Resource) -> None:
    result = load_file(path)
    assert result.ok, [d.format() for d in result.diagnostics]
    [back] = result.resources
    assert same_content(back, expected)


async def test_apply_writes_one_file_atomically_and_serves_it_at_once(
    store: FileStore, config_dir: Path
) -> None:
    await store.start()
    vs = resource(virtual_service(subset="v2"))
    rev = store.apply(vs)
    assert rev == 1 == store.revision
    written = config_dir / "default" / "virtualservice-reviews.yaml"
    assert all_files(config_dir) == ["default/virtualservice-reviews.yaml"]  # no temp files
    loads_back_as(written, vs)
    served = store.get(VS)
    assert served is not None and same_content(served, vs)
    assert served.source is not None and served.source.file == str(written)
    # The watcher sees the file it already knows: no second bump.
    await settle(store)
    assert store.revision == rev
    assert store.diagnostics() == []


async def test_apply_identical_is_a_no_op(store: FileStore, config_dir: Path) -> None:
    await store.start()
    store.apply(resource(virtual_service()))
    written = config_dir / "default" / "virtualservice-reviews.yaml"
    before = written.stat().st_mtime_ns, written.stat().st_ino
    assert store.apply(resource(virtual_service())) == 1
    assert (written.stat().st_mtime_ns, written.stat().st_ino) == before


async def test_apply_replaces_and_wakes_waiters(store: FileStore, config_dir: Path) -> None:
    await store.start()
    store.apply(resource(virtual_service(subset="v1")))
    waiter = asyncio.create_task(next_revision(store, 1))
    await asyncio.sleep(0)
    assert store.apply(resource(virtual_service(subset="v2"))) == 2
    assert await waiter == 2
    loads_back_as(
        config_dir / "default" / "virtualservice-reviews.yaml",
        resource(virtual_service(subset="v2")),
    )


async def test_apply_without_raw_renders_the_typed_object(
    store: FileStore, config_dir: Path
) -> None:
    await store.start()
    loaded = resource(SERVICE_REVIEWS)
    bare = Resource(loaded.api_version, loaded.kind, loaded.metadata, loaded.spec)
    store.apply(bare)
    loads_back_as(config_dir / "default" / "service-reviews.yaml", loaded)


async def test_apply_with_stale_raw_falls_back_to_the_typed_object(
    store: FileStore, config_dir: Path
) -> None:
    await store.start()
    v1, v2 = resource(virtual_service(subset="v1")), resource(virtual_service(subset="v2"))
    # A caller changed the typed spec but left the old document in ``raw``.
    mixed = Resource(v2.api_version, v2.kind, v2.metadata, v2.spec, raw=v1.raw)
    store.apply(mixed)
    loads_back_as(config_dir / "default" / "virtualservice-reviews.yaml", v2)


async def test_apply_into_another_namespace_creates_its_directory(
    store: FileStore, config_dir: Path
) -> None:
    await store.start()
    store.apply(resource(virtual_service("ratings", namespace="prod")))
    assert all_files(config_dir) == ["prod/virtualservice-ratings.yaml"]


async def test_apply_creates_a_missing_write_directory(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "new" / "config")
    await store.start()
    try:
        store.apply(resource(DESTINATION_RULE_REVIEWS))
        assert all_files(tmp_path) == ["new/config/default/destinationrule-reviews.yaml"]
        assert store.diagnostics() == []  # the path exists now
    finally:
        await store.close()


async def test_apply_rewrites_a_single_object_user_file_in_place(
    store: FileStore, config_dir: Path
) -> None:
    user = config_dir / "my-routes.yaml"
    user.write_text(virtual_service(subset="v1"))
    await store.start()
    store.apply(resource(virtual_service(subset="v2")))
    assert all_files(config_dir) == ["my-routes.yaml"]
    loads_back_as(user, resource(virtual_service(subset="v2")))


async def test_apply_refuses_an_object_living_in_a_multi_object_file(
    store: FileStore, config_dir: Path
) -> None:
    user = config_dir / "bookinfo.yaml"
    text = docs(DESTINATION_RULE_REVIEWS, virtual_service(subset="v1"))
    user.write_text(text)
    await store.start()
    with pytest.raises(StoreError, match=r"bookinfo\.yaml"):
        store.apply(resource(virtual_service(subset="v2")))
    assert user.read_text() == text
    assert all_files(config_dir) == ["bookinfo.yaml"]
    assert store.revision == 1


async def test_apply_refuses_an_object_living_in_a_broken_file(
    store: FileStore, config_dir: Path
) -> None:
    user = config_dir / "vs.yaml"
    user.write_text(virtual_service(subset="v1"))
    await store.start()
    user.write_text("kind: [\n")
    await store.poll()
    assert store.diagnostics()
    with pytest.raises(StoreError, match="has errors") as refused:
        store.apply(resource(virtual_service(subset="v2")))
    assert refused.value.diagnostics
    assert user.read_text() == "kind: [\n"


async def test_validator_refusal_writes_nothing(config_dir: Path) -> None:
    def prod_is_frozen(r: Resource) -> Iterable[Diagnostic]:
        if r.namespace == "prod":
            return [Diagnostic(Severity.ERROR, "namespace prod is frozen", None, r.kind)]
        return []

    store = FileStore(config_dir, validator=prod_is_frozen)
    await store.start()
    with pytest.raises(StoreError, match="frozen") as refused:
        store.apply(resource(virtual_service(namespace="prod")))
    assert [d.message for d in refused.value.diagnostics] == ["namespace prod is frozen"]
    assert all_files(config_dir) == []
    assert store.revision == 0
    store.apply(resource(virtual_service()))
    assert store.revision == 1


async def test_apply_refuses_names_that_would_escape_or_hide(
    store: FileStore, config_dir: Path
) -> None:
    await store.start()
    loaded = resource(virtual_service())
    for name in (".hidden", "a/b"):
        meta = loaded.metadata.model_copy(update={"name": name})
        with pytest.raises(StoreError, match="file name"):
            store.apply(Resource(loaded.api_version, loaded.kind, meta, loaded.spec))
    assert all_files(config_dir) == []


async def test_apply_needs_a_directory(tmp_path: Path) -> None:
    single = tmp_path / "only.yaml"
    single.write_text(SERVICE_REVIEWS)
    store = FileStore(single)
    store.rescan()
    with pytest.raises(StoreError, match="no configured directory"):
        store.apply(resource(virtual_service()))


async def test_delete_removes_a_file_written_by_apply(store: FileStore, config_dir: Path) -> None:
    await store.start()
    store.apply(resource(virtual_service()))
    store.apply(resource(SERVICE_REVIEWS))
    assert store.delete(VS) == 3
    assert store.get(VS) is None
    assert all_files(config_dir) == ["default/service-reviews.yaml"]
    await settle(store)
    assert store.revision == 3


async def test_a_delete_of_what_was_read_refuses_a_newer_file(
    store: FileStore, config_dir: Path
) -> None:
    await store.start()
    store.apply(resource(virtual_service(subset="v1")))
    read = store.get(VS)
    store.apply(resource(virtual_service(subset="v2")))
    with pytest.raises(StoreConflict):
        store.delete(VS, expected=read)
    assert store.get(VS) is not None and all_files(config_dir)
    store.delete(VS, expected=store.get(VS))
    assert store.get(VS) is None and all_files(config_dir) == []


async def test_delete_removes_a_single_object_user_file(store: FileStore, config_dir: Path) -> None:
    (config_dir / "svc.yaml").write_text(SERVICE_REVIEWS)
    (config_dir / "vs.yaml").write_text(virtual_service())
    await store.start()
    store.delete(SVC)
    assert all_files(config_dir) == ["vs.yaml"]
    assert [str(r.key) for r in store.list()] == [str(VS)]


async def test_delete_refuses_an_object_in_a_multi_object_file(
    store: FileStore, config_dir: Path
) -> None:
    text = docs(DESTINATION_RULE_REVIEWS, virtual_service())
    (config_dir / "bookinfo.yaml").write_text(text)
    await store.start()
    with pytest.raises(StoreError, match=r"bookinfo\.yaml") as refused:
        store.delete(VS)
    assert "1 other" in str(refused.value)
    assert (config_dir / "bookinfo.yaml").read_text() == text
    assert store.get(VS) is not None and store.revision == 1


async def test_delete_refuses_when_a_duplicate_would_take_over(
    store: FileStore, config_dir: Path
) -> None:
    (config_dir / "a.yaml").write_text(virtual_service(subset="v1"))
    (config_dir / "b.yaml").write_text(virtual_service(subset="v2"))
    await store.start()
    with pytest.raises(StoreError, match=r"b\.yaml"):
        store.delete(VS)
    assert all_files(config_dir) == ["a.yaml", "b.yaml"]


async def test_delete_of_an_unknown_key_raises_key_error(store: FileStore) -> None:
    await store.start()
    with pytest.raises(KeyError):
        store.delete(VS)


async def test_writes_into_a_json_file_stay_json(store: FileStore, config_dir: Path) -> None:
    user = config_dir / "svc.json"
    user.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "reviews"},
                "spec": {"ports": [{"port": 80}]},
            }
        )
    )
    await store.start()
    store.apply(resource(SERVICE_REVIEWS))
    assert json.loads(user.read_text())["spec"]["ports"][0]["port"] == 9080
    loads_back_as(user, resource(SERVICE_REVIEWS))


async def test_apply_during_a_poll_is_not_undone_by_it(config_dir: Path) -> None:
    user = config_dir / "vs.yaml"
    user.write_text(virtual_service(subset="v1"))
    parsing, proceed = threading.Event(), threading.Event()

    def gated_loader(text: str, filename: str) -> LoadResult:
        if "subset: v2" in text:  # the poll read the external edit; hold it there
            parsing.set()
            assert proceed.wait(DEADLINE)
        return load_text(text, filename)

    store = FileStore(config_dir, load_text=gated_loader)
    await store.poll()
    user.write_text(virtual_service(subset="v2"))  # an edit on disk...
    polling = asyncio.create_task(store.poll())
    await asyncio.to_thread(parsing.wait, DEADLINE)
    # ...overtaken by an API write while the poll is still parsing the edit.
    v3 = resource(virtual_service(subset="v3"))
    rev = store.apply(v3)
    proceed.set()
    assert not await polling
    assert store.revision == rev
    served = store.get(VS)
    assert served is not None and same_content(served, v3)
    loads_back_as(user, v3)
