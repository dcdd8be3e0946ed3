"""A sidecar's local part never reads routing rules (``compose.SIDECAR_LOCAL_UNREAD``).

The generator keeps every sidecar's local part across a change that touches only
those kinds, so the claim is checked on every golden case: the part is the same
when the snapshot holds none of them.
"""

from __future__ import annotations

import dataclasses

import pytest
from translate_cases import case_names, case_views, load_snapshot

from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.compose import (
    CLUSTER_PART_UNREAD,
    SIDECAR_LOCAL_UNREAD,
    cluster_part,
    differ_only_in,
    local_part,
    part_keys,
    sidecar_local_inputs_equal,
)


def _without(snapshot: Snapshot, kinds: frozenset[str]) -> Snapshot:
    return dataclasses.replace(
        snapshot,
        resources=tuple(r for r in snapshot.resources if r.kind not in kinds),
        by_kind={k: v for k, v in snapshot.by_kind.items() if k not in kinds},
        destination_rules={} if "DestinationRule" in kinds else snapshot.destination_rules,
    )


def _without_routing(snapshot: Snapshot) -> Snapshot:
    return _without(snapshot, SIDECAR_LOCAL_UNREAD)


@pytest.mark.parametrize("case", case_names())
def test_sidecar_local_part_is_the_same_without_routing_rules(case: str) -> None:
    snapshot = load_snapshot(case)
    stripped = _without_routing(snapshot)
    assert sidecar_local_inputs_equal(snapshot, stripped)
    for proxy, view in case_views(case).items():
        if view.role == "sidecar":
            assert local_part(stripped, view) == local_part(snapshot, view), f"{case} / {proxy}"


@pytest.mark.parametrize("case", case_names())
def test_clusters_without_a_sidecar_are_the_same_without_virtual_services(case: str) -> None:
    snapshot = load_snapshot(case)
    stripped = _without(snapshot, CLUSTER_PART_UNREAD)
    assert differ_only_in(snapshot, stripped, CLUSTER_PART_UNREAD)
    assert not differ_only_in(snapshot, _without_routing(snapshot), CLUSTER_PART_UNREAD) or (
        not snapshot.of_kind("DestinationRule")
    )
    checked = 0
    for proxy, view in case_views(case).items():
        if view.role == "node-proxy":
            continue
        key = part_keys(snapshot, view).clusters
        if key.sidecar:
            continue  # a Sidecar's egress scope reads VirtualServices (not kept)
        assert cluster_part(stripped, key) == cluster_part(snapshot, key), f"{case} / {proxy}"
        checked += 1
    assert (
        checked
        or all(v.role == "node-proxy" for v in case_views(case).values())
        or any(part_keys(snapshot, v).clusters.sidecar for v in case_views(case).values())
    )


def test_routing_rules_are_in_some_golden_case() -> None:
    """The check above means something: cases with both kinds exist."""
    kinds = {r.kind for case in case_names() for r in load_snapshot(case).resources}
    assert kinds >= SIDECAR_LOCAL_UNREAD
