"""``pilotfish up`` names each Kubernetes workload it cannot run, once, and why."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pilotfish.api.loader import load_file
from pilotfish.runtime.kube_workloads import not_run_reasons
from pilotfish.runtime.mesh import MeshRuntime
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.store.memory import MemoryStore

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"
BOOKINFO = TESTDATA / "istio-samples" / "bookinfo" / "platform" / "kube" / "bookinfo.yaml"


def test_every_kubernetes_workload_gets_a_reason_naming_its_images() -> None:
    reasons = not_run_reasons(load_file(BOOKINFO).resources)
    assert sorted(reasons) == [
        "Deployment default/details-v1",
        "Deployment default/productpage-v1",
        "Deployment default/ratings-v1",
        "Deployment default/reviews-v1",
        "Deployment default/reviews-v2",
        "Deployment default/reviews-v3",
    ]
    why = reasons["Deployment default/details-v1"]
    assert why == (
        "not run: image registry.istio.io/release/examples-bookinfo-details-v1:1.20.3 cannot "
        "run here (no --image-map given; the local runtime has no container runtime)"
    )


def test_workloads_and_other_kinds_are_not_named() -> None:
    resources = [
        r
        for r in load_file(TESTDATA / "api" / "bookinfo" / "services.yaml").resources
        if r.kind in ("Workload", "Service")
    ]
    assert resources and not_run_reasons(resources) == {}


def test_reconcile_reports_each_once_and_again_after_a_change(tmp_path: Path) -> None:
    said: list[str] = []
    mesh = MeshRuntime(RuntimeSettings(state_dir=tmp_path), progress=said.append)
    store = MemoryStore()
    for r in load_file(BOOKINFO).resources:
        store.apply(r)
    mesh.cp = SimpleNamespace(store=store)  # type: ignore[assignment]
    mesh._report_not_run()
    mesh._report_not_run()
    assert len(said) == 6 and said[0].startswith("Deployment default/details-v1 not run: ")
    details = next(r for r in store.list(kind="Deployment") if r.name == "details-v1")
    store.delete(details.key)
    mesh._report_not_run()
    store.apply(details)
    mesh._report_not_run()
    assert len(said) == 7 and said[-1].startswith("Deployment default/details-v1 not run: ")
