"""The result of an explanation: ordered steps and a summary outcome.

Each ``Step`` is one decision Envoy makes (listener, filter chain, virtual
host, route...): what was ``chosen`` and the ``reasons`` (why it and why not
the alternatives before it). ``Outcome`` is the machine-checkable summary the
tests compare with what real Envoy did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Explanation", "Outcome", "Step"]


@dataclass
class Step:
    step: str
    chosen: str
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "chosen": self.chosen, "reasons": self.reasons}
        if self.details:
            out["details"] = self.details
        return out


@dataclass
class Outcome:
    """``cluster``: the destination cluster when there is exactly one candidate;
    ``clusters``: every weighted candidate (name -> weight). ``status``: the HTTP
    status Envoy answers itself (404 no route, 403 denied, a fault abort...),
    None when the request goes upstream. ``authz``: ALLOW, DENY, NONE (no
    authorization at the destination) or UNKNOWN (depends on runtime data)."""

    cluster: str | None = None
    clusters: dict[str, int] = field(default_factory=dict)
    status: int | None = None
    authz: str = "NONE"
    authz_policy: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "clusters": self.clusters,
            "status": self.status,
            "authz": self.authz,
            "authz_policy": self.authz_policy,
            "notes": self.notes,
        }


@dataclass
class Explanation:
    source: str
    request: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)

    def add(self, step: str, chosen: str, reasons: list[str] | None = None, **details: Any) -> Step:
        s = Step(step, chosen, reasons or [], dict(details))
        self.steps.append(s)
        return s

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "request": self.request,
            "steps": [s.to_json() for s in self.steps],
            "outcome": self.outcome.to_json(),
        }
