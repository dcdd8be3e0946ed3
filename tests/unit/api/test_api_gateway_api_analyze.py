"""``analyze`` reports what the Gateway API converter found, at the user's line."""

from __future__ import annotations

from pathlib import Path

from pilotfish.api.analyze import analyze_paths

FILES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs:
  - name: gw
  - name: gw
    sectionName: https
  rules:
  - backendRefs:
    - name: api
      namespace: backends
      port: 8080
"""


def test_analyze_reports_conversion_findings(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(FILES)
    found = {(d.field, d.source.line if d.source else 0): d for d in analyze_paths([str(path)])}
    refused = found[("spec.rules[0].backendRefs[0]", 18)]
    assert not refused.is_error
    assert refused.message.startswith("RefNotPermitted: backendRef Service backends/api")
    parent = found[("spec.parentRefs[1]", 14)]
    assert parent.message.startswith("NoMatchingParent")
    assert len(found) == 2
