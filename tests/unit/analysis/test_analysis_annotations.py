"""Istio's annotation messages: IST0107, IST0108, IST0125, IST0135, IST0136.

Each message has a case that must raise it and a near miss that must not;
the registry is checked against istio/api's ``annotations.yaml`` when the
mirror is on the machine.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from pilotfish.api.analysis.annotation_registry import ANNOTATIONS, lookup
from pilotfish.api.analysis.annotation_values import VALIDATORS
from pilotfish.api.analyze import analyze_loaded, analyze_paths
from pilotfish.api.diagnostics import Diagnostic, Severity
from pilotfish.api.loader import load_text

API_GIT = Path("/work/.mirror/istio+api/repo")
GRID = Path(__file__).resolve().parents[2] / "testdata" / "istio-analyzers"
ANNOTATION_CODES = ("IST0107", "IST0108", "IST0125", "IST0135", "IST0136")

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  labels: {labels}
  annotations:
    {annotation}
spec:
  containers: [{{name: web, image: web}}]
  initContainers: [{{name: {init}}}]
"""
SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations:
    {annotation}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80}}]
"""
DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web}}
      annotations:
        {annotation}
    spec:
      containers: [{{name: web, image: web}}]
"""


def analyze(template: str, annotation: str, **kw: str) -> list[Diagnostic]:
    text = template.format(annotation=annotation, **{"labels": "{app: web}", "init": "x", **kw})
    loaded = load_text(textwrap.dedent(text).lstrip("\n"), "test.yaml")
    assert [d.format() for d in loaded.diagnostics if d.is_error] == []
    return analyze_loaded(loaded.resources)


def found(diags: list[Diagnostic], code: str) -> list[tuple[str, str, int]]:
    return [
        (f"{d.kind} {d.name}", d.field, d.source.line if d.source else 0)
        for d in diags
        if d.code == code
    ]


def test_unknown_annotation_raises_ist0108_at_its_line() -> None:
    diags = analyze(SERVICE, "networking.istio.io/exportToo: '*'")
    assert found(diags, "IST0108") == [
        ("Service web", "metadata.annotations['networking.istio.io/exportToo']", 7)
    ]
    # The near miss: the registry's spelling, and annotations outside Istio's namespace.
    diags = analyze(SERVICE, "networking.istio.io/exportTo: '*'\n    example.com/istio: x")
    assert found(diags, "IST0108") == []


def test_misplaced_annotation_raises_ist0107() -> None:
    diags = analyze(SERVICE, "sidecar.istio.io/proxyCPU: 100m")
    assert [(w, f) for w, f, _ in found(diags, "IST0107")] == [
        ("Service web", "metadata.annotations['sidecar.istio.io/proxyCPU']")
    ]
    # The near miss: the same annotation on a pod template, where it belongs.
    diags = analyze(DEPLOYMENT, "sidecar.istio.io/proxyCPU: 100m")
    assert found(diags, "IST0107") == []
    # An annotation of any kind (galley.istio.io/analyze-suppress) is never misplaced.
    diags = analyze(SERVICE, "galley.istio.io/analyze-suppress: IST0118")
    assert found(diags, "IST0107") == []


def test_invalid_annotation_value_raises_ist0125() -> None:
    diags = analyze(DEPLOYMENT, "sidecar.istio.io/proxyCPU: lots")
    assert found(diags, "IST0125") == [
        ("Deployment web", "spec.template.metadata.annotations['sidecar.istio.io/proxyCPU']", 10)
    ]
    assert "resource quantity" in next(d.message for d in diags if d.code == "IST0125")
    # The near miss: a valid quantity.
    assert found(analyze(DEPLOYMENT, "sidecar.istio.io/proxyCPU: 500m"), "IST0125") == []


def test_deprecated_annotation_raises_ist0135_unless_the_label_is_also_set() -> None:
    diags = analyze(POD, "sidecar.istio.io/inject: 'true'")
    assert found(diags, "IST0135") == [
        ("Pod web", "metadata.annotations['sidecar.istio.io/inject']", 8)
    ]
    message = next(d.message for d in diags if d.code == "IST0135")
    assert "label" in message
    assert next(d for d in diags if d.code == "IST0135").severity is Severity.INFO
    # The near miss: the replacement label beside it (the user keeps both on purpose).
    labels = "{app: web, sidecar.istio.io/inject: 'true'}"
    diags = analyze(POD, "sidecar.istio.io/inject: 'true'", labels=labels)
    assert found(diags, "IST0135") == []


def test_alpha_annotation_raises_ist0136_except_injector_defaults_under_cni() -> None:
    diags = analyze(POD, "sidecar.istio.io/interceptionMode: REDIRECT", init="istio-init")
    assert [f for _, f, _ in found(diags, "IST0136")] == [
        "metadata.annotations['sidecar.istio.io/interceptionMode']"
    ]
    # The near misses: without istio-init (Istio CNI) the injector sets it itself;
    # a Beta annotation; one Istio's control plane writes (sidecar.istio.io/status).
    assert found(analyze(POD, "sidecar.istio.io/interceptionMode: REDIRECT"), "IST0136") == []
    assert found(analyze(POD, "proxy.istio.io/config: '{}'"), "IST0136") == []
    assert found(analyze(POD, "sidecar.istio.io/status: '{}'"), "IST0136") == []


def test_istios_misannotated_file_gives_istios_findings_one_per_annotation() -> None:
    diags = analyze_paths([str(GRID / "misannotated.yaml")])
    alpha = sorted(f"{d.kind} {d.name}" for d in diags if d.code == "IST0136")
    # Istio's "alpha" case lists the same resources this many times.
    assert alpha == sorted(
        ["Deployment fortio-deploy", "Service httpbin"]
        + ["Pod invalid-annotations"] * 2
        + ["Pod anno-not-set-by-default"] * 4
    )


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("sidecar.istio.io/interceptionMode", "TPROXY", "redirect"),
        ("status.sidecar.istio.io/port", "15020", "70000"),
        ("readiness.status.sidecar.istio.io/periodSeconds", "10", "-1"),
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", "*", "10.0.0.1"),
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0/8,fd00::/8", "10.0.0.0/33"),
        ("traffic.sidecar.istio.io/includeInboundPorts", "*", "80,http"),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "15020, 9090", "99999"),
        ("traffic.sidecar.istio.io/excludeInterfaces", "eth1,veth.2", "1eth"),
        ("prometheus.istio.io/merge-metrics", "False", "yes"),
        ("proxy.istio.io/config", "concurrency: 2", "[1, 2]"),
        ("sidecar.istio.io/proxyMemoryLimit", "1Gi", "1GB"),
    ],
)
def test_value_checks_follow_istios_injector(name: str, good: str, bad: str) -> None:
    check = VALIDATORS[name]
    assert check(good) is None
    assert check(bad) is not None


def test_every_checked_annotation_is_in_the_registry() -> None:
    assert all(lookup(name) is not None for name in VALIDATORS)
    assert {a.feature_status for a in ANNOTATIONS} <= {"Alpha", "Beta", "Stable"}


def test_registry_matches_istio_api_annotations_yaml_when_available() -> None:
    if not API_GIT.exists():
        return
    text = subprocess.run(
        ["git", "--git-dir", str(API_GIT), "show", "HEAD:annotation/annotations.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    istio = {
        a["name"]: (a.get("featureStatus") or "Alpha", bool(a["deprecated"]), tuple(a["resources"]))
        for a in yaml.safe_load(text)["annotations"]
    }
    ours = {a.name: (a.feature_status, a.deprecated, a.resources) for a in ANNOTATIONS}
    assert ours == istio


def test_annotation_codes_are_raised_by_the_catalogue() -> None:
    from pilotfish.api.analysis import ANALYZER_CODES

    assert set(ANNOTATION_CODES) <= ANALYZER_CODES
