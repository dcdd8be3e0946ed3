"""Observability of a transparent Bookinfo mesh under the demo profile.

Metrics, Prometheus, traces, access logs and the dashboard, checked the way a
user sees them. One mesh (``demo_mesh``) serves every test of this module.
"""

from __future__ import annotations

import pytest
from e2ekit import E2EMesh, http_get

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(600)]


def test_demo_mesh_serves_productpage(demo_mesh: E2EMesh) -> None:
    status, _ = http_get(demo_mesh.ingress + "/productpage")
    assert status == 200
