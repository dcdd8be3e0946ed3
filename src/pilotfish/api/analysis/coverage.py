"""Which of Istio's analyzer messages Pilotfish raises, and why the others do not apply.

``docs/analyze-messages.md`` is ``render_table()``; a unit test fails when the
file is stale, so the table always says what the code does. A code is
*implemented* when an analyzer raises it (``api.analysis.ANALYZER_CODES``),
*not applicable* with a reason below, else *missing*.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from pilotfish.api.analysis.messages import MESSAGES
from pilotfish.api.diagnostics import Severity

__all__ = ["NOT_APPLICABLE", "render_table", "status_of"]

_NO_ENVOYFILTER = "EnvoyFilter is not an accepted kind"
_NO_CRDS = "Pilotfish's kinds are built in: there are no CRDs with versions"
_NO_CLUSTER = "needs a live Kubernetes cluster (pod status, API server): Pilotfish has none"
_SCHEMA = (
    "Pilotfish's loader and validators reject schema problems themselves, with file, line "
    "and field (exit code 1), instead of reporting them as an analyzer message"
)

NOT_APPLICABLE: Final = MappingProxyType(
    {
        "IST0001": "an analyzer failure is a Pilotfish bug and fails the command loudly",
        "IST0103": "Pilotfish's runtime starts every pod with its sidecar; " + _NO_CLUSTER,
        "IST0106": _SCHEMA,
        "IST0126": "meshNetworks (multi-network service registries) is not supported",
        "IST0133": _SCHEMA,
        "IST0139": "Pilotfish has no admission webhooks; webhook kinds are not accepted",
        "IST0141": "about installing Istio into a cluster with RBAC; " + _NO_CLUSTER,
        "IST0142": "about the Kubernetes server version; " + _NO_CLUSTER,
        "IST0143": "needs the sockets a running pod listens on; " + _NO_CLUSTER,
        "IST0146": "`image: auto` needs Istio's gateway injection webhook, which Pilotfish "
        "does not have (its runtime starts gateways itself)",
        "IST0147": "`image: auto` needs Istio's gateway injection webhook, which Pilotfish "
        "does not have (its runtime starts gateways itself)",
        "IST0148": "enableNamespacesByDefault is a setting of Istio's injection webhook",
        "IST0151": _NO_ENVOYFILTER,
        "IST0152": _NO_ENVOYFILTER,
        "IST0153": _NO_ENVOYFILTER,
        "IST0154": _NO_ENVOYFILTER,
        "IST0155": _NO_ENVOYFILTER,
        "IST0156": _NO_CRDS,
        "IST0158": "compares running pods' proxy images with the injector's; " + _NO_CLUSTER,
        "IST0163": "external (remote) control planes are not supported",
        "IST0164": "external (remote) control planes are not supported",
        "IST0167": "ambient mode (the reason Istio gives) is not supported",
        "IST0168": "about upgrading between Istio releases (compatibilityVersion)",
        "IST0169": "about upgrading between Istio releases (compatibilityVersion)",
        "IST0170": "multi-cluster meshes are not supported",
        "IST0172": _NO_CRDS,
        "IST0175": "BLOCKED_CIDRS_IN_JWKS_URIS is an istiod setting; Pilotfish reads JWKS "
        "only from RequestAuthentication's inline jwks",
        "IST0176": _NO_CRDS,
    }
)


def status_of(code: str, implemented: frozenset[str]) -> str:
    if code in implemented:
        return "implemented"
    if code in NOT_APPLICABLE:
        return "not applicable"
    return "missing"


def _level(severity: Severity) -> str:
    return severity.value.capitalize()


def render_table(implemented: frozenset[str]) -> str:
    """The Markdown of ``docs/analyze-messages.md``."""
    counts = {"implemented": 0, "not applicable": 0, "missing": 0}
    rows: list[str] = []
    for m in MESSAGES:
        status = status_of(m.code, implemented)
        counts[status] += 1
        why = NOT_APPLICABLE.get(m.code, "") if status == "not applicable" else ""
        rows.append(f"| {m.code} | {m.name} | {_level(m.level)} | {status} | {why} |")
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    return "\n".join(
        [
            "# `pilotfish analyze` and Istio's analyzer messages",
            "",
            "Generated from `pilotfish.api.analysis.coverage` (a unit test fails when this",
            "file is stale: `pytest tests/unit/analysis --update-golden` rewrites it).",
            "",
            "Every message of Istio's `pkg/config/analysis/msg/messages.yaml`. *implemented*:",
            "an analyzer of Pilotfish raises it, with Istio's code and level, at the line of",
            "the field concerned; *not applicable*: why it cannot arise with Pilotfish;",
            "*missing*: it could, and no analyzer raises it yet.",
            "",
            f"{len(MESSAGES)} messages: {summary}.",
            "",
            "| code | name | level | status | why not applicable |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
