"""Telemetry validation: each error names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pilotfish.api.loader import load_text
from pilotfish.api.telemetry.expressions import tag_value_format
from pilotfish.cli.analyze import analyze
from pilotfish.model.mesh_config import MeshConfigError, parse_mesh_config

# Istio's samples/open-telemetry Telemetry manifests (Apache-2.0), copied verbatim.
ISTIO_SAMPLES = Path(__file__).parents[2] / "testdata" / "api" / "telemetry"

HEAD = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: shop}\n"


def errors(body: str) -> list[tuple[int, str, str]]:
    result = load_text(HEAD + body, "tel.yaml")
    return [
        (d.source.line if d.source else 0, d.field or "", d.message)
        for d in result.diagnostics
        if d.is_error
    ]


def test_valid_telemetry_has_no_errors() -> None:
    body = """spec:
  selector: {matchLabels: {app: reviews}}
  tracing:
  - providers: [{name: zipkin}]
    randomSamplingPercentage: 10
    customTags:
      team: {literal: {value: shop}}
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      tagOverrides:
        user: {value: "request.headers['x-user']"}
  accessLogging:
  - filter: {expression: "response.code >= 400"}
"""
    assert errors(body) == []


def test_unsupported_tag_expression_is_rejected_at_its_line() -> None:
    body = """spec:
  metrics:
  - overrides:
    - tagOverrides:
        user:
          value: upstream_peer.labels['app'].value
"""
    ((line, field, message),) = errors(body)
    assert line == 9
    assert field == "spec.metrics[0].overrides[0].tagOverrides.user.value"
    assert "unsupported expression" in message


def test_bad_sampling_metric_and_unknown_field() -> None:
    body = """spec:
  tracing:
  - randomSamplingPercentage: 150
"""
    assert errors(body) == [
        (6, "spec.tracing[0].randomSamplingPercentage", "must be between 0 and 100")
    ]
    found = errors("spec:\n  metrics:\n  - overrides:\n    - match: {metric: NOPE}\n")
    assert found and found[0][1].startswith("spec.metrics[0].overrides[0].match.metric")
    assert errors("spec:\n  colour: red\n")


def test_selector_and_target_ref_together_are_an_error() -> None:
    body = "spec:\n  selector: {matchLabels: {app: a}}\n  targetRef: {kind: Service, name: a}\n"
    assert [f for _, f, _ in errors(body)] == ["spec.targetRef"]


def test_tag_value_forms() -> None:
    assert tag_value_format("request.headers['x-user']") == "%REQ(x-user)%"
    assert tag_value_format("'fixed'") == "fixed"
    assert tag_value_format("request.host") is None


def test_mesh_config_telemetry_errors_name_the_field() -> None:
    bad = "extensionProviders:\n- name: a\n  zipkin: {service: s, port: 1}\n"
    bad += "defaultProviders:\n  tracing: [missing]\naccessLogEncoding: JSON\n"
    bad += "accessLogFormat: 'not json'\n"
    try:
        parse_mesh_config(bad, "mesh.yaml")
    except MeshConfigError as exc:
        fields = {d.field: d.source.line if d.source else 0 for d in exc.diagnostics}
    else:
        raise AssertionError("expected errors")
    assert fields == {"accessLogFormat": 7, "defaultProviders.tracing[0]": 5}


def test_analyze_with_mesh_config_checks_provider_names(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "extensionProviders:\n- name: otel-tracing\n"
        "  opentelemetry: {service: otel.observability.svc.cluster.local, port: 4317}\n"
        "- name: otel\n  envoyFileAccessLog: {path: /dev/stdout}\n"
    )
    ok = CliRunner().invoke(analyze, [str(ISTIO_SAMPLES), "--mesh-config", str(mesh)])
    assert ok.exit_code == 0, ok.output
    mesh.write_text("extensionProviders: []\n")
    bad = CliRunner().invoke(analyze, [str(ISTIO_SAMPLES), "--mesh-config", str(mesh)])
    assert bad.exit_code == 1
    assert "istio_otel_loki.yaml:10: Telemetry istio-system/mesh-logging" in bad.output
    assert "spec.accessLogging[0].providers[0].name: unknown provider 'otel'" in bad.output
    assert "spec.tracing[0].providers[0].name: unknown provider 'otel-tracing'" in bad.output
