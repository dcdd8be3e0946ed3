"""``pilotfish analyze`` with istioctl's interface: formats, thresholds, suppressions,
namespaces, several files together, system namespaces, cluster-scoped objects."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from pilotfish.cli.analyze import analyze

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: {ns}
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: {ns}
spec:
  selector: {{app: reviews}}
  ports:
  - name: http
    port: 9080
"""
NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {name}
"""
DANGLING_DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ghost
  namespace: default
spec:
  host: ghost
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(analyze, list(args), catch_exceptions=False)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_log_lines_have_istios_shape_with_file_and_line(tmp_path: Path) -> None:
    vs = write(tmp_path / "vs.yaml", VS.format(ns="default"))
    result = run("-o", "log", vs)
    assert result.exit_code == 79, result.output
    assert result.stdout.splitlines() == [
        f"Error [IST0101] (VirtualService default/reviews {vs}:12) "
        "spec.http[0].route[0].destination.host: host 'reviews.default.svc.cluster.local' "
        "matches no Service or ServiceEntry"
    ]


def test_files_analyzed_together_resolve_references(tmp_path: Path) -> None:
    vs = write(tmp_path / "vs.yaml", VS.format(ns="default"))
    svc = write(tmp_path / "svc.yaml", SERVICE.format(ns="default"))
    result = run("-o", "log", vs, svc)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "No validation issues found when analyzing 2 files" in result.stderr
    # A directory is the same as its files.
    assert run("-o", "log", str(tmp_path)).exit_code == 0


def test_json_and_yaml_are_istios_list(tmp_path: Path) -> None:
    vs = write(tmp_path / "vs.yaml", VS.format(ns="default"))
    result = run("-o", "json", vs)
    assert result.exit_code == 79
    items = json.loads(result.stdout)
    assert items == [
        {
            "code": "IST0101",
            "level": "Error",
            "origin": "VirtualService default/reviews",
            "reference": f"{vs}:12",
            "message": "host 'reviews.default.svc.cluster.local' matches no Service or "
            "ServiceEntry",
            "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/",
            "field": "spec.http[0].route[0].destination.host",
        }
    ]
    as_yaml = run("-o", "yaml", vs)
    assert yaml.safe_load(as_yaml.stdout) == items
    clean = write(tmp_path / "svc.yaml", SERVICE.format(ns="default"))
    assert json.loads(run("-o", "json", clean).stdout) == []


def test_failure_threshold(tmp_path: Path) -> None:
    dr = write(tmp_path / "dr.yaml", DANGLING_DR)  # IST0174 UnknownDestinationRuleHost: Warning
    assert run(dr).exit_code == 0
    assert run("--failure-threshold", "Warning", dr).exit_code == 79
    assert run("--failure-threshold", "info", dr).exit_code == 79
    bad = run("--failure-threshold", "Fatal", dr)
    assert bad.exit_code == 2
    assert "not a level" in bad.output


def test_output_threshold_hides_lower_levels_but_not_the_exit_code(tmp_path: Path) -> None:
    ns = write(tmp_path / "ns.yaml", NAMESPACE.format(name="shop"))  # IST0102: Info
    vs = write(tmp_path / "vs.yaml", VS.format(ns="shop"))  # IST0101: Error
    shown = run("-o", "log", ns, vs).stdout.splitlines()
    assert [line.split(" ", 2)[:2] for line in shown] == [
        ["Error", "[IST0101]"],
        ["Info", "[IST0102]"],
    ]
    result = run("-o", "log", "--output-threshold", "Warning", ns, vs)
    assert [line.split(" ", 2)[:2] for line in result.stdout.splitlines()] == [
        ["Error", "[IST0101]"]
    ]
    result = run("-o", "log", "--output-threshold", "Error", "--failure-threshold", "Info", ns)
    assert result.stdout == ""
    assert result.exit_code == 79  # the hidden Info finding still counts


def test_cluster_scoped_objects_print_without_namespace(tmp_path: Path) -> None:
    ns = write(tmp_path / "ns.yaml", NAMESPACE.format(name="shop"))
    log = run("-o", "log", ns).stdout
    assert log.startswith(f"Info [IST0102] (Namespace shop {ns}:3) ")
    text = run(ns).stdout
    assert text.startswith(f"{ns}:3: Namespace shop: metadata: info: namespace shop is not")


def test_suppress_by_code_and_resource_glob(tmp_path: Path) -> None:
    ns = write(tmp_path / "ns.yaml", NAMESPACE.format(name="shop"))
    vs = write(tmp_path / "vs.yaml", VS.format(ns="shop"))
    codes = lambda r: [line.split(" ", 2)[1] for line in r.stdout.splitlines()]  # noqa: E731
    assert codes(run("-o", "log", "--suppress", "IST0102=Namespace shop", ns, vs)) == ["[IST0101]"]
    # istioctl's own spelling (name.namespace), and a glob.
    result = run("-o", "log", "-S", "IST0101=VirtualService reviews.shop", ns, vs)
    assert codes(result) == ["[IST0102]"]
    assert result.exit_code == 0
    result = run("-o", "log", "-S", "IST0101=VirtualService shop/*", "-S", "IST0102=*", ns, vs)
    assert result.stdout == ""
    # A suppression must name the resource; an unknown code is only a warning.
    assert run("-S", "IST0101", vs).exit_code == 2
    unknown = run("-S", "IST9999=Namespace shop", ns)
    assert "IST9999 is not one of Istio's message codes" in unknown.stderr
    # A near miss: the code matches, the resource does not.
    assert codes(run("-o", "log", "-S", "IST0101=VirtualService other/*", vs)) == ["[IST0101]"]


def test_namespace_scope(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", VS.format(ns="shop"))
    b = write(tmp_path / "b.yaml", VS.format(ns="books"))
    origins = lambda r: [line.split("(")[1].split(" ")[1] for line in r.stdout.splitlines()]  # noqa: E731
    assert origins(run("-o", "log", a, b)) == ["shop/reviews", "books/reviews"]
    assert origins(run("-o", "log", "-A", a, b)) == ["shop/reviews", "books/reviews"]
    assert origins(run("-o", "log", "-n", "books", a, b)) == ["books/reviews"]
    assert run("-n", "books", "-A", a).exit_code == 2


def test_scope_keeps_cross_namespace_references(tmp_path: Path) -> None:
    # The Service is in another namespace than the one reported on: still found.
    vs = VS.format(ns="shop").replace("host: reviews\n", "host: reviews.books.svc.cluster.local\n")
    a = write(tmp_path / "a.yaml", vs)
    b = write(tmp_path / "b.yaml", SERVICE.format(ns="books"))
    result = run("-o", "log", "-n", "shop", a, b)
    assert result.stdout == "", result.stdout


def test_system_namespaces_are_not_analyzed(tmp_path: Path) -> None:
    kube = write(tmp_path / "kube.yaml", VS.format(ns="kube-system"))
    nss = [NAMESPACE.format(name=n) for n in ("kube-system", "kube-public", "local-path-storage")]
    ns = write(tmp_path / "ns.yaml", "---\n".join(nss))
    result = run("-o", "log", kube, ns)
    assert result.stdout == ""
    assert result.exit_code == 0
    # The near miss: the same VirtualService in an ordinary namespace is reported.
    other = write(tmp_path / "other.yaml", VS.format(ns="kube-systems"))
    assert "[IST0101]" in run("-o", "log", other).stdout


def test_invalid_configuration_exits_one(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "bad.yaml", SERVICE.format(ns="default").replace("port: 9080", "prot: 1")
    )
    result = run("-o", "log", bad)
    assert result.exit_code == 1
    assert result.stdout.startswith("Error (Service default/reviews ")
