"""The conformance table: outcomes recorded by the e2e module, written as Markdown.

``Outcome`` is what one ported case did (pass, fail with the first mismatch,
or not applicable with the reason). ``render`` lists every upstream test of
the profiles (``inventory``), so a test the harness does not run yet shows as
"not run" with why, never disappears. The e2e module writes the table at the
end of its run (``docs/gateway-api-conformance.md``); nothing else does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PASS, FAIL, NOT_APPLICABLE, NOT_RUN = "pass", "fail", "not applicable", "not run"


@dataclass(frozen=True)
class Outcome:
    result: str
    detail: str = ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def counts(
    tests: Sequence[tuple[str, bool, tuple[str, ...]]], outcomes: Mapping[str, Outcome]
) -> dict[str, dict[str, int]]:
    """{"core"|"extended": {result: n}} over ``tests``."""
    out: dict[str, dict[str, int]] = {"core": {}, "extended": {}}
    for name, core, _ in tests:
        result = outcomes.get(name, Outcome(NOT_RUN)).result
        bucket = out["core" if core else "extended"]
        bucket[result] = bucket.get(result, 0) + 1
    return out


def _summary(title: str, tally: dict[str, dict[str, int]]) -> str:
    parts = []
    for level in ("core", "extended"):
        got = tally[level]
        total = sum(got.values())
        shown = ", ".join(
            f"{got[r]} {r}" for r in (PASS, FAIL, NOT_APPLICABLE, NOT_RUN) if r in got
        )
        parts.append(f"{level} {total}: {shown or 'none'}")
    return f"- **{title}**: " + "; ".join(parts)


def render(
    profiles: Mapping[str, Sequence[tuple[str, bool, tuple[str, ...]]]],
    outcomes: Mapping[str, Outcome],
    not_run_reason: Mapping[str, str],
    header: str,
) -> str:
    """The Markdown table for ``profiles`` ({profile: inventory}) and ``outcomes``.

    A test without an outcome is "not run", with ``not_run_reason`` of its
    name, else of its profile.
    """
    lines = [header.rstrip(), ""]
    for profile, tests in profiles.items():
        lines.append(_summary(profile, counts(tests, outcomes)))
    for profile, tests in profiles.items():
        lines += [
            "",
            f"## {profile}",
            "",
            "| test | level | result | detail |",
            "| --- | --- | --- | --- |",
        ]
        for name, core, features in sorted(tests, key=lambda t: (not t[1], t[0])):
            why = not_run_reason.get(name) or not_run_reason.get(profile, "")
            outcome = outcomes.get(name) or Outcome(NOT_RUN, why)
            extra = [f for f in features if f not in ("Gateway", "HTTPRoute", "GRPCRoute", "Mesh")]
            level = "core" if core else "extended" + (f" ({', '.join(extra)})" if extra else "")
            lines.append(
                f"| {name} | {_cell(level)} | {outcome.result} | {_cell(outcome.detail)} |"
            )
    return "\n".join(lines) + "\n"
