from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pilotfish.api.analyze import analyze_paths
from pilotfish.cli.analyze import analyze

SAMPLES = Path(__file__).resolve().parents[2] / "testdata" / "api"

SERVICE = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
    "spec: {ports: [{name: http, port: 80}]}\n"
)
DANGLING_DR = (
    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
    "metadata: {name: ghost}\nspec: {host: ghost}\n"
)


def test_samples_analyze_without_errors() -> None:
    found = analyze_paths([str(SAMPLES)])
    assert [d for d in found if d.is_error] == []
    # The bookinfo sample declares one of bookinfo's workloads (reviews-v2): the
    # Kubernetes-manifest checks rightly say what the others would be missing.
    assert sorted(
        (Path(d.source.file).name, d.source.line, d.field) for d in found if d.source
    ) == [
        ("destination-rules.yaml", 34, "spec.subsets[0].labels"),
        ("destination-rules.yaml", 40, "spec.subsets[2].labels"),
        ("destination-rules.yaml", 68, "spec.subsets[0].labels"),
        # The converters' findings (Ingress, SMI): these samples exercise loading,
        # not a complete mesh.
        ("ingress.yaml", 21, "spec.tls[0].secretName"),
        ("services.yaml", 27, "spec.selector"),
        ("services.yaml", 56, "spec.selector"),
        ("smi.yaml", 9, "spec.backends[0].service"),
        ("smi.yaml", 11, "spec.backends[1].service"),
        ("smi.yaml", 24, "spec.backends[0].service"),
        ("smi.yaml", 61, "spec.destination.name"),
        # IST0135: the sidecar.istio.io/inject annotation is deprecated (the label replaces it).
        ("workloads.yaml", 55, "spec.template.metadata.annotations['sidecar.istio.io/inject']"),
    ]


def test_cli_istio_errors_exit_79_and_suppressed_exit_zero() -> None:
    # The three IST0173 findings (subsets selecting no pod) are Errors in Istio's
    # catalogue: istioctl's exit code 79. Suppressed, only warnings remain: 0.
    result = CliRunner().invoke(analyze, [str(SAMPLES)])
    assert result.exit_code == 79, result.output
    summary = "3 errors, 7 warnings, 1 info message in 16 files"
    assert result.output.strip().splitlines()[-1] == summary
    result = CliRunner().invoke(analyze, [str(SAMPLES), "--suppress", "IST0173=DestinationRule *"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == summary.replace("3 errors", "0 errors")


def test_cli_error_exit_one_and_format(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SERVICE.replace("port: 80", "port: 80, colour: red"))
    result = CliRunner().invoke(analyze, [str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert (
        lines[0]
        == f"{tmp_path / 'a.yaml'}:4: Service default/web: spec.ports[0].colour: unknown field"
    )
    assert lines[-1] == "1 error, 0 warnings in 1 file"


def test_cli_warnings_alone_exit_zero(tmp_path: Path) -> None:
    (tmp_path / "dr.yml").write_text(DANGLING_DR)
    result = CliRunner().invoke(analyze, [str(tmp_path / "dr.yml")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(
        f"{tmp_path / 'dr.yml'}:4: DestinationRule default/ghost: spec.host: warning: "
    )
    assert lines[-1] == "0 errors, 1 warning in 1 file"


def test_duplicates_across_files_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SERVICE)
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.yaml").write_text(SERVICE)
    (tmp_path / "notes.txt").write_text("not config")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.yaml").write_text(": broken")
    found = analyze_paths([str(tmp_path)])
    (d,) = found
    assert d.is_error and "duplicate Service default/web" in d.message
    assert d.source is not None and d.source.file == str(sub / "b.yaml")
    assert str(tmp_path / "a.yaml") in d.message


def test_references_span_files(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(SERVICE.replace("web", "ghost"))
    (tmp_path / "dr.yaml").write_text(DANGLING_DR)
    assert analyze_paths([str(tmp_path)]) == []


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(analyze, [str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no such file or directory" in result.output
