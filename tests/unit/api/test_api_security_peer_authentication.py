from __future__ import annotations

import pytest
from api_testing import Loader

from pilotfish.api.security.peer_authentication import PeerAuthenticationSpec

HEAD = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa, namespace: foo}
spec:
"""


def _load(load: Loader, spec: str) -> tuple[PeerAuthenticationSpec | None, dict[str, str]]:
    result = load(HEAD + "\n".join("  " + line for line in spec.strip("\n").splitlines()) + "\n")
    problems = {d.field: d.message for d in result.diagnostics}
    if not result.resources:
        return None, problems
    spec_model = result.resources[0].spec
    assert isinstance(spec_model, PeerAuthenticationSpec)
    return spec_model, problems


def test_workload_policy_with_port_levels(load: Loader) -> None:
    spec, problems = _load(
        load,
        """
selector: {matchLabels: {app: reviews}}
mtls: {mode: STRICT}
portLevelMtls:
  9080: {mode: PERMISSIVE}
  "15000": {mode: DISABLE}
""",
    )
    assert problems == {}
    assert spec is not None and spec.mtls is not None and spec.mtls.mode == "STRICT"
    assert {p: m.mode for p, m in spec.port_level_mtls.items()} == {
        9080: "PERMISSIVE",
        15000: "DISABLE",
    }


def test_v1beta1_and_defaults(load: Loader) -> None:
    result = load(HEAD.replace("/v1\n", "/v1beta1\n") + "  mtls: {}\n")
    assert result.diagnostics == ()
    spec = result.resources[0].spec
    assert isinstance(spec, PeerAuthenticationSpec)
    assert spec.selector is None and spec.mtls is not None and spec.mtls.mode == "UNSET"


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ("mtls: {mode: strict}", "spec.mtls.mode", "'UNSET', 'DISABLE', 'PERMISSIVE'"),
        ("portLevelMtls: {8080: {mode: STRICT}}", "spec.portLevelMtls", "requires a selector"),
        (
            "selector: {matchLabels: {}}\nportLevelMtls: {8080: {mode: STRICT}}",
            "spec.portLevelMtls",
            "requires a selector",
        ),
        (
            "selector: {matchLabels: {app: a}}\nportLevelMtls: {}",
            "spec.portLevelMtls",
            "at least one port",
        ),
        (
            "selector: {matchLabels: {app: a}}\nportLevelMtls: {0: {mode: STRICT}}",
            "spec.portLevelMtls.0",
            "out of range",
        ),
        (
            "selector: {matchLabels: {app: a}}\nportLevelMtls: {70000: {mode: STRICT}}",
            "spec.portLevelMtls.70000",
            "out of range",
        ),
        ("selector: {matchLabels: {'bad key!': a}}", "spec.selector.matchLabels", "label key"),
        ("mtls: {mode: STRICT, extra: 1}", "spec.mtls.extra", "unknown field"),
    ],
)
def test_errors(load: Loader, spec: str, field: str, fragment: str) -> None:
    model, problems = _load(load, spec)
    assert model is None
    matching = [f for f in problems if f.startswith(field)]
    assert matching, problems
    assert fragment in problems[matching[0]]


def test_error_points_at_the_port_line(load: Loader) -> None:
    result = load(
        HEAD + "  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    0:\n      mode: STRICT\n"
    )
    (d,) = result.diagnostics
    assert d.field == "spec.portLevelMtls.0"
    assert d.source is not None and d.source.line == 7  # the "0:" key
