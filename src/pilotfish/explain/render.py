"""Text rendering of an explanation (its JSON form, as the control plane sends it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_text"]


def _result(o: Mapping[str, Any]) -> str:
    if o.get("status") is not None:
        return f"Result: Envoy answers {o['status']}"
    if o.get("cluster"):
        return f"Result: sent to {o['cluster']}"
    if o.get("clusters"):
        split = ", ".join(f"{c} (weight {w})" for c, w in o["clusters"].items())
        return f"Result: split between {split}"
    return "Result: not routed"


def render_text(explanation: Mapping[str, Any]) -> str:
    """Numbered steps, each with its reasons, then the result."""
    req = explanation.get("request", {})
    lines = [f"{req.get('method', 'GET')} {req.get('url', '')} from {explanation.get('from', '')}"]
    lines.append("")
    for i, step in enumerate(explanation.get("steps", []), 1):
        lines.append(f"{i:>2}. {step['step']}: {step['chosen']}")
        lines += [f"      - {reason}" for reason in step.get("reasons", [])]
    o = explanation.get("outcome", {})
    lines += ["", _result(o)]
    if o.get("authz", "NONE") != "NONE":
        by = f" ({o['authz_policy']})" if o.get("authz_policy") else ""
        lines.append(f"Authorization at the destination: {o['authz']}{by}")
    lines += [f"Note: {n}" for n in o.get("notes", [])]
    return "\n".join(lines) + "\n"
