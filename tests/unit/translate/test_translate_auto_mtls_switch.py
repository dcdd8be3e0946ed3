"""meshConfig.enableAutoMtls switches automatic mTLS to sidecar destinations."""

from __future__ import annotations

from pilotfish.api.loader import load_text
from pilotfish.model.mesh_config import MeshConfig
from pilotfish.model.snapshot import build_snapshot
from pilotfish.translate.clusters import outbound_clusters

CONFIG = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""


def _auto_mtls(enable: bool) -> list[bool]:
    result = load_text(CONFIG, "reviews.yaml")
    assert result.ok, result.diagnostics
    snapshot = build_snapshot(result.resources, 1, mesh=MeshConfig(enable_auto_mtls=enable))
    clusters = outbound_clusters(snapshot, "default", workload_certs=True)
    return [c.auto_mtls is not None for c in clusters if "reviews" in c.name]


def test_auto_mtls_is_on_by_default_for_proxies_with_certificates() -> None:
    assert _auto_mtls(True) == [True]


def test_enable_auto_mtls_false_keeps_destinations_plaintext() -> None:
    assert _auto_mtls(False) == [False]
