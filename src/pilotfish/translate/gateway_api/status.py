"""Status stanzas as the Gateway API defines them: conditions with the spec's reasons.

Conversion is a pure function of the configuration, so a condition's
``lastTransitionTime`` cannot be "now": it is the object's
``creationTimestamp`` when the object has one, else the Unix epoch. Clients
that compare conditions (``kubectl wait --for=condition=Accepted``) read
``status`` and ``reason``, which are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pilotfish.api.resource import Resource

__all__ = ["Condition", "conditions", "transition_time"]

_EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    ok: bool
    reason: str
    message: str = ""


def transition_time(res: Resource) -> str:
    return res.metadata.creation_timestamp or _EPOCH


def conditions(res: Resource, items: list[Condition]) -> list[dict[str, Any]]:
    """``items`` as Kubernetes conditions of ``res`` (one per type, in order)."""
    when = transition_time(res)
    generation = res.metadata.generation or 1
    return [
        {
            "type": c.type,
            "status": "True" if c.ok else "False",
            "reason": c.reason,
            "message": c.message or _default_message(c),
            "observedGeneration": generation,
            "lastTransitionTime": when,
        }
        for c in items
    ]


def _default_message(c: Condition) -> str:
    return f"{c.type}: {c.reason}" if not c.ok else c.reason
