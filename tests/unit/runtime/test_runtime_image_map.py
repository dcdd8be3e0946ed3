"""Image maps: Kubernetes workloads run as the Workloads their images map to."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pilotfish.api.loader import load_file, load_text
from pilotfish.api.runtime.workload import WorkloadSpec
from pilotfish.cli.main import cli
from pilotfish.runtime.image_map import ImageMapError, as_workload, load_image_map
from pilotfish.runtime.kube_workloads import plan_workloads
from pilotfish.runtime.pod_spec import PodSpec

ROOT = Path(__file__).resolve().parents[3]
BOOKINFO_MAP = ROOT / "samples" / "image-maps" / "bookinfo.yaml"
ISTIO_BOOKINFO = ROOT / "tests/testdata/istio-samples/bookinfo/platform/kube/bookinfo.yaml"


def test_lookup_ignores_registry_tag_and_digest_for_short_keys() -> None:
    image_map = load_image_map(BOOKINFO_MAP)
    for image in (
        "docker.io/istio/examples-bookinfo-details-v1:1.20.3",
        "registry.istio.io/release/examples-bookinfo-details-v1:1.20.3",
        "examples-bookinfo-details-v1",
        "localhost:5000/examples-bookinfo-details-v1@sha256:abc",
    ):
        entry = image_map.lookup(image)
        assert entry is not None, image
        assert entry.command[-1] == "pilotfish.samples.bookinfo.details"
    assert image_map.lookup("docker.io/library/nginx:1") is None


def test_istio_bookinfo_runs_as_the_python_bookinfo() -> None:
    resources = load_file(ISTIO_BOOKINFO).resources
    runnable, reasons = plan_workloads(resources, load_image_map(BOOKINFO_MAP))
    assert reasons == {}
    by_name = {w.name: w for w in runnable}
    assert sorted(by_name) == [
        "details-v1",
        "productpage-v1",
        "ratings-v1",
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
    ]
    reviews = by_name["reviews-v2"]
    assert reviews.kind == "Workload"
    assert reviews.metadata.labels == {"app": "reviews", "version": "v2"}
    spec = reviews.spec
    assert isinstance(spec, WorkloadSpec)
    assert spec.service_account == "bookinfo-reviews"
    assert spec.command == ["python", "-m", "pilotfish.samples.bookinfo.reviews"]
    # Istio's own env (LOG_DIR) is kept; the map's SERVICE_VERSION is added.
    assert spec.env_dict() == {"LOG_DIR": "/tmp/logs", "SERVICE_VERSION": "v2"}
    assert [(p.name, p.container_port) for p in spec.ports] == [(None, 9080)]
    assert spec.readiness_probe is not None and spec.readiness_probe.port == 9080
    pod = PodSpec.from_workload(reviews, 0)  # what the runtime starts
    assert pod.name == "reviews-v2-0" and pod.service_account == "bookinfo-reviews"


def test_what_cannot_run_says_why() -> None:
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: docker.io/library/nginx:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  containers: [{name: a, image: examples-bookinfo-details-v1}, {name: b, image: x}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template: {spec: {containers: [{name: a, image: examples-bookinfo-details-v1}]}}
"""
    resources = load_text(text, "t.yaml").resources
    _, reasons = plan_workloads(resources, load_image_map(BOOKINFO_MAP))
    assert (
        "image docker.io/library/nginx:1 cannot run here (the image map has no entry"
        in (reasons["Deployment default/web"])
    )
    assert "2 containers" in reasons["Pod default/two"]
    assert "Jobs run to completion" in reasons["Job default/once"]
    assert "no --image-map given" in str(as_workload(resources[0], None))


def test_a_workload_of_the_same_name_wins(tmp_path: Path) -> None:
    workload = (
        "apiVersion: pilotfish.io/v1alpha1\nkind: Workload\n"
        "metadata: {name: details-v1, labels: {app: details}}\nspec: {command: [x]}\n"
    )
    resources = [*load_text(workload, "w.yaml").resources, *load_file(ISTIO_BOOKINFO).resources]
    runnable, reasons = plan_workloads(resources, load_image_map(BOOKINFO_MAP))
    assert "details-v1" not in {w.name for w in runnable}
    why = "not run: Workload default/details-v1 already has that name"
    assert reasons == {"Deployment default/details-v1": why}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("images: {a: {command: []}}", "images.a.command"),
        ("images: {a: {command: [x], colour: red}}", "images.a.colour"),
        ("{{", "not YAML"),
    ],
)
def test_bad_maps_are_refused(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(content)
    with pytest.raises(ImageMapError, match=problem):
        load_image_map(path)


def test_up_refuses_a_bad_map_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("images: {a: {command: []}}")
    result = CliRunner().invoke(
        cli,
        ["up", str(ISTIO_BOOKINFO), "--image-map", str(bad), "--state-dir", str(tmp_path / "s")],
    )
    assert result.exit_code == 2
    assert "images.a.command" in result.output
    assert not (tmp_path / "s" / "state.json").exists()


CONFORMANCE_MAP = ROOT / "samples" / "image-maps" / "gateway-api-conformance.yaml"
CONFORMANCE_BASE = ROOT / "tests/testdata/gateway-api-conformance/base-manifests.yaml"


def test_a_mounted_secret_volume_becomes_a_secret_volume_of_the_pod() -> None:
    text = CONFORMANCE_BASE.read_text().replace("{GATEWAY_CLASS_NAME}", "istio")
    resources = load_text(text, str(CONFORMANCE_BASE)).resources
    runnable, _ = plan_workloads(resources, load_image_map(CONFORMANCE_MAP))
    by_key = {(w.namespace, w.name): w for w in runnable}
    pod = PodSpec.from_workload(by_key[("gateway-conformance-infra", "tls-backend")], 0)
    assert [(v.secret, v.mount_path, v.items) for v in pod.secret_volumes] == [
        (
            "tls-checks-certificate",
            "/etc/secret-volume",
            (("tls.crt", "crt"), ("tls.key", "key")),
        )
    ]
    assert dict(pod.env)["TLS_SERVER_CERT"] == "/etc/secret-volume/crt"
    # The recorded spec keeps them (the runtime re-reads it when it adopts pods).
    assert PodSpec.from_json(pod.to_json()) == pod
    # A pod without volumes has none; the reviews pods' emptyDir mounts are not Secrets.
    plain = PodSpec.from_workload(by_key[("gateway-conformance-infra", "infra-backend-v1")], 0)
    assert plain.secret_volumes == ()
    bookinfo = plan_workloads(load_file(ISTIO_BOOKINFO).resources, load_image_map(BOOKINFO_MAP))
    reviews = next(w for w in bookinfo[0] if w.name == "reviews-v1")
    assert PodSpec.from_workload(reviews, 0).secret_volumes == ()


def test_a_mounted_config_map_volume_becomes_a_config_map_volume_of_the_pod() -> None:
    path = CONFORMANCE_BASE.parent / "tests" / "gateway-tls-backend-client-certificate.yaml"
    text = path.read_text().replace("{GATEWAY_CLASS_NAME}", "istio")
    runnable, _ = plan_workloads(
        load_text(text, str(path)).resources, load_image_map(CONFORMANCE_MAP)
    )
    (workload,) = runnable
    pod = PodSpec.from_workload(workload, 0)
    assert [(v.kind, v.secret, v.mount_path, v.items) for v in pod.secret_volumes] == [
        (
            "Secret",
            "tls-checks-certificate",
            "/etc/secret-volume",
            (("tls.crt", "crt"), ("tls.key", "key")),
        ),
        ("ConfigMap", "tls-checks-ca-certificate", "/etc/configmap-volume", (("ca.crt", "ca"),)),
    ]
    assert PodSpec.from_json(pod.to_json()) == pod


def test_the_pod_templates_annotations_reach_the_pod() -> None:
    # sidecar.istio.io/inject is read from the pod's annotations too (and prometheus.io/*).
    text = ISTIO_BOOKINFO.read_text().replace(
        "      labels:\n        app: ratings\n",
        '      annotations:\n        sidecar.istio.io/inject: "false"\n'
        "      labels:\n        app: ratings\n",
        1,
    )
    assert text != ISTIO_BOOKINFO.read_text()
    resources = load_text(text, str(ISTIO_BOOKINFO)).resources
    runnable, _ = plan_workloads(resources, load_image_map(BOOKINFO_MAP))
    by_name = {w.name: w for w in runnable}
    ratings = PodSpec.from_workload(by_name["ratings-v1"], 0)
    assert dict(ratings.annotations) == {"sidecar.istio.io/inject": "false"}
    assert PodSpec.from_workload(by_name["details-v1"], 0).annotations == ()
