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
from pilotfish.translate.compose import SIDECAR_LOCAL_UNREAD, local_part, sidecar_local_inputs_equal


def _without_routing(snapshot: Snapshot) -> Snapshot:
    return dataclasses.replace(
        snapshot,
        resources=tuple(r for r in snapshot.resources if r.kind not in SIDECAR_LOCAL_UNREAD),
        by_kind={k: v for k, v in snapshot.by_kind.items() if k not in SIDECAR_LOCAL_UNREAD},
        destination_rules={},
    )


@pytest.mark.parametrize("case", case_names())
def test_sidecar_local_part_is_the_same_without_routing_rules(case: str) -> None:
    snapshot = load_snapshot(case)
    stripped = _without_routing(snapshot)
    assert sidecar_local_inputs_equal(snapshot, stripped)
    for proxy, view in case_views(case).items():
        if view.role == "sidecar":
            assert local_part(stripped, view) == local_part(snapshot, view), f"{case} / {proxy}"


def test_routing_rules_are_in_some_golden_case() -> None:
    """The check above means something: cases with both kinds exist."""
    kinds = {r.kind for case in case_names() for r in load_snapshot(case).resources}
    assert kinds >= SIDECAR_LOCAL_UNREAD
