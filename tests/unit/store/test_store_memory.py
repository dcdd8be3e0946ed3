"""MemoryStore: revisions, no-op applies, listing, validation and watching."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from store_testing import (
    DESTINATION_RULE_REVIEWS,
    SERVICE_REVIEWS,
    resource,
    virtual_service,
)

from pilotfish.api.diagnostics import Diagnostic, Severity
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.store import MemoryStore, StoreConflict, StoreError

VS_KEY = ResourceKey("VirtualService", "default", "reviews")


def test_empty_store_starts_at_revision_zero() -> None:
    store = MemoryStore()
    assert store.revision == 0
    assert store.list() == []
    assert store.get(VS_KEY) is None


def test_initial_resources_are_one_revision() -> None:
    store = MemoryStore([resource(virtual_service()), resource(SERVICE_REVIEWS)])
    assert store.revision == 1
    assert len(store.list()) == 2


def test_apply_and_delete_bump_the_revision() -> None:
    store = MemoryStore()
    assert store.apply(resource(virtual_service(subset="v1"))) == 1
    assert store.apply(resource(virtual_service(subset="v2"))) == 2
    served = store.get(VS_KEY)
    assert served is not None
    assert served.raw["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"
    assert store.delete(VS_KEY) == 3
    assert store.get(VS_KEY) is None


def test_identical_apply_is_a_no_op() -> None:
    store = MemoryStore()
    store.apply(resource(virtual_service()))
    # Same content loaded from elsewhere (different source and raw) is still the same object.
    again = resource(virtual_service() + "# trailing comment\n")
    assert store.apply(again) == 1
    assert store.revision == 1


def test_delete_of_missing_key_raises_key_error() -> None:
    store = MemoryStore()
    with pytest.raises(KeyError):
        store.delete(VS_KEY)
    assert store.revision == 0


def test_list_is_sorted_and_filters_by_kind_and_namespace() -> None:
    store = MemoryStore()
    for text in (
        virtual_service("ratings"),
        virtual_service("reviews", namespace="prod"),
        virtual_service("details"),
        DESTINATION_RULE_REVIEWS,
        SERVICE_REVIEWS,
    ):
        store.apply(resource(text))
    assert [str(r.key) for r in store.list()] == [
        "DestinationRule default/reviews",
        "Service default/reviews",
        "VirtualService default/details",
        "VirtualService default/ratings",
        "VirtualService prod/reviews",
    ]
    assert [r.name for r in store.list(kind="VirtualService", namespace="default")] == [
        "details",
        "ratings",
    ]
    assert [r.kind for r in store.list(namespace="prod")] == ["VirtualService"]
    assert store.list(kind="Gateway") == []


def test_validator_can_refuse_a_write() -> None:
    def no_prod(r: Resource) -> Iterable[Diagnostic]:
        if r.namespace == "prod":
            yield Diagnostic(Severity.ERROR, "prod is read-only", None, r.kind, r.namespace, r.name)
        yield Diagnostic(Severity.WARNING, "just a warning")

    store = MemoryStore(validator=no_prod)
    assert store.apply(resource(virtual_service())) == 1  # warnings alone let it through
    with pytest.raises(StoreError) as refused:
        store.apply(resource(virtual_service(namespace="prod")))
    assert "prod is read-only" in str(refused.value)
    assert [d.message for d in refused.value.diagnostics] == ["prod is read-only", "just a warning"]
    assert store.revision == 1
    assert store.get(ResourceKey("VirtualService", "prod", "reviews")) is None


async def test_wait_for_change_wakes_every_waiter() -> None:
    store = MemoryStore()
    waiters = [asyncio.create_task(store.wait_for_change(0)) for _ in range(3)]
    await asyncio.sleep(0)  # let them all park
    assert not any(w.done() for w in waiters)
    store.apply(resource(virtual_service()))
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [1, 1, 1]
    # A revision that already exists returns at once.
    assert await asyncio.wait_for(store.wait_for_change(0), 1) == 1


def test_a_delete_of_what_was_read_refuses_a_newer_object() -> None:
    store = MemoryStore()
    store.apply(resource(virtual_service(subset="v1")))
    read = store.get(VS_KEY)
    assert read is not None
    store.apply(resource(virtual_service(subset="v2")))
    revision = store.revision
    with pytest.raises(StoreConflict):
        store.delete(VS_KEY, expected=read)
    assert store.get(VS_KEY) is not None and store.revision == revision
    # An equal copy of what is held is what was read: it goes.
    store.delete(VS_KEY, expected=resource(virtual_service(subset="v2")))
    assert store.get(VS_KEY) is None
    with pytest.raises(KeyError):
        store.delete(VS_KEY, expected=read)
