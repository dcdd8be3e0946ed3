"""``apply_all``: several objects as one change, all or nothing, in every store."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from store_testing import DESTINATION_RULE_REVIEWS, SERVICE_REVIEWS, resource, virtual_service

from pilotfish.api.diagnostics import Diagnostic, Severity
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store import CompositeStore, FileStore, MemoryStore, StoreError

VS = ResourceKey("VirtualService", "default", "reviews")
DR = ResourceKey("DestinationRule", "default", "reviews")
SVC = ResourceKey("Service", "default", "reviews")


def _files(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with its text."""
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def _frozen_prod(r: Resource) -> Iterable[Diagnostic]:
    if r.namespace == "prod":
        return [Diagnostic(Severity.ERROR, "namespace prod is frozen", None, r.kind)]
    return []


def test_memory_batch_is_one_revision() -> None:
    store = MemoryStore()
    batch = [resource(virtual_service()), resource(DESTINATION_RULE_REVIEWS)]
    assert store.apply_all(batch) == 1
    assert store.get(VS) is not None and store.get(DR) is not None
    # Unchanged objects do not count; an all-unchanged batch keeps the revision.
    assert store.apply_all(batch) == 1
    changed = [resource(virtual_service(subset="v2")), resource(DESTINATION_RULE_REVIEWS)]
    assert store.apply_all(changed) == 2


def test_memory_batch_refused_by_one_object_stores_none() -> None:
    store = MemoryStore(validator=_frozen_prod)
    batch = [resource(virtual_service()), resource(virtual_service(namespace="prod"))]
    with pytest.raises(StoreError, match="frozen"):
        store.apply_all(batch)
    assert (store.revision, len(store)) == (0, 0)


def test_a_batch_names_each_object_once() -> None:
    store = MemoryStore()
    with pytest.raises(StoreError, match="more than once"):
        store.apply_all([resource(virtual_service()), resource(virtual_service(subset="v2"))])
    assert len(store) == 0


def test_composite_batch_goes_to_the_primary() -> None:
    primary, overlay = MemoryStore(), MemoryStore()
    store = CompositeStore(primary, [overlay])
    revision = store.apply_all([resource(virtual_service()), resource(SERVICE_REVIEWS)])
    assert revision == store.revision == 1
    assert primary.get(VS) is not None and primary.get(SVC) is not None
    assert overlay.list() == []


async def test_file_batch_writes_every_file_with_one_bump(
    store: FileStore, config_dir: Path
) -> None:
    await store.start()
    batch = [resource(virtual_service()), resource(DESTINATION_RULE_REVIEWS)]
    assert store.apply_all(batch) == 1
    assert sorted(_files(config_dir)) == [
        "default/destinationrule-reviews.yaml",
        "default/virtualservice-reviews.yaml",
    ]
    assert store.get(VS) is not None and store.get(DR) is not None
    assert store.apply_all(batch) == 1  # identical: nothing written, nothing bumped


async def test_file_batch_refused_by_one_object_writes_nothing(config_dir: Path) -> None:
    store = FileStore(config_dir, validator=_frozen_prod)
    await store.start()
    try:
        batch = [resource(virtual_service()), resource(virtual_service(namespace="prod"))]
        with pytest.raises(StoreError, match="frozen"):
            store.apply_all(batch)
        assert _files(config_dir) == {}
        assert store.revision == 0
    finally:
        await store.close()


async def test_file_batch_refused_by_a_shared_user_file_writes_nothing(
    store: FileStore, config_dir: Path
) -> None:
    (config_dir / "both.yaml").write_text(SERVICE_REVIEWS + "---\n" + DESTINATION_RULE_REVIEWS)
    await store.start()
    before = _files(config_dir)
    changed_dr = DESTINATION_RULE_REVIEWS.replace("name: v2", "name: v3")
    with pytest.raises(StoreError, match="other object"):
        store.apply_all([resource(virtual_service()), resource(changed_dr)])
    assert _files(config_dir) == before
    assert store.get(VS) is None


async def test_a_failed_write_restores_the_files_already_written(
    store: FileStore, config_dir: Path
) -> None:
    # The DestinationRule already has its own file, which the batch rewrites first;
    # the VirtualService's namespace directory cannot be created (a plain file is
    # in the way), so its write fails after the first file was replaced.
    (config_dir / "dr.yaml").write_text(DESTINATION_RULE_REVIEWS)
    (config_dir / "blocked").write_text("not a directory\n")
    await store.start()
    before = _files(config_dir)
    revision = store.revision
    changed_dr = DESTINATION_RULE_REVIEWS.replace("name: v2", "name: v3")
    new_svc = SERVICE_REVIEWS.replace("name: reviews", "name: ratings")
    batch = [
        resource(changed_dr),
        resource(new_svc),
        resource(virtual_service(namespace="blocked")),
    ]
    with pytest.raises(StoreError, match="nothing was written") as failed:
        store.apply_all(batch)
    assert "blocked" in str(failed.value)
    assert _files(config_dir) == before  # the DR's old bytes back, the new Service gone
    assert store.revision == revision
    served = store.get(DR)
    assert served is not None and [s.name for s in served.spec.subsets] == ["v1", "v2"]
    assert store.get(ResourceKey("Service", "default", "ratings")) is None
