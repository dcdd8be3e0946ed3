"""Istio's own sample manifests (vendored unchanged) pass ``analyze``.

Each file alone, and all of them together (but the Gateway API variants,
which are alternatives to one another), gives no error. What is reported
instead (warnings where Istio warns, info lines for ignored kinds and port
names) is pinned in a golden file: review its diff like code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from golden import assert_golden
from pilotfish.api.analyze import analyze_paths

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"
SAMPLES = TESTDATA / "istio-samples"
FILES = sorted(SAMPLES.rglob("*.yaml"))
# The gateway-api directories hold alternatives to one another (several routes
# named ``reviews``), so they are analyzed one file at a time only.
TOGETHER = [p for p in FILES if p.parent.name != "gateway-api"]


def test_the_vendored_files_are_the_ones_meant() -> None:
    names = [str(p.relative_to(SAMPLES)) for p in FILES]
    assert "bookinfo/platform/kube/bookinfo.yaml" in names
    assert "httpbin/httpbin.yaml" in names
    assert "bookinfo/gateway-api/bookinfo-gateway.yaml" in names
    assert "bookinfo/platform/kube/bookinfo-ingress.yaml" in names
    assert len(names) == 28


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_each_sample_alone_has_no_error(path: Path) -> None:
    found = analyze_paths([str(path)])
    assert [d.format() for d in found if d.is_error] == []


def test_all_samples_together(update_golden: bool) -> None:
    found = analyze_paths([str(p) for p in TOGETHER])
    assert [d.format() for d in found if d.is_error] == []
    rows = [
        {
            "at": f"{Path(d.source.file).relative_to(SAMPLES)}:{d.source.line}" if d.source else "",
            "severity": d.severity.value,
            "object": f"{d.kind} {d.namespace}/{d.name}",
            "field": d.field,
            "code": d.code,
            "message": d.message,
        }
        for d in found
    ]
    assert_golden(TESTDATA / "istio-samples-analyze.yaml", rows, update_golden)
