from __future__ import annotations

from pathlib import Path

from api_testing import Loader, by_field

from pilotfish.api.loader import load_file, load_text
from pilotfish.api.networking.virtual_service import VirtualServiceSpec

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: prod
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        prefix: /api
    route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
    retries:
      attempts: 2
      perTryTimeout: 1s
"""


def test_loads_typed_spec_with_snake_case_attributes(load: Loader) -> None:
    result = load(VS)
    assert result.ok, [d.format() for d in result.diagnostics]
    (res,) = result.resources
    assert res.key.kind == "VirtualService" and res.namespace == "prod" and res.name == "reviews"
    spec = res.spec
    assert isinstance(spec, VirtualServiceSpec)
    route = spec.http[0]
    assert route.match[0].uri is not None and route.match[0].uri.prefix == "/api"
    assert [d.destination.subset for d in route.route] == ["v1", "v2"]
    assert route.retries is not None and route.retries.per_try_timeout == "1s"
    assert res.raw["spec"]["hosts"] == ["reviews"]


def test_lines_of_nested_fields(load: Loader) -> None:
    (res,) = load(VS).resources
    assert res.source is not None and (res.source.file, res.source.line) == ("test.yaml", 1)
    assert res.lines["spec.hosts[0]"] == 8
    assert res.lines["spec.http[0].route[1].destination.host"] == 19
    assert res.lines["spec.http[0].route[1].weight"] == 21
    assert res.line_of("spec.http[0].retries.perTryTimeout") == 24
    # A field that is not there falls back to its nearest parent.
    assert res.line_of("spec.http[0].route[0].destination.port.number") == 14


def test_multi_document_and_empty_documents(load: Loader) -> None:
    text = VS + "---\n---\n# only a comment\n---\n" + VS.replace("name: reviews", "name: other")
    result = load(text)
    assert result.ok
    assert [r.name for r in result.resources] == ["reviews", "other"]
    second = result.resources[1]
    assert second.source is not None and second.source.line > 25
    assert second.lines["spec.hosts[0]"] == second.source.line + 7


def test_unknown_field_is_named_with_path_and_line(load: Loader) -> None:
    result = load(
        VS.replace(
            "        host: reviews\n        subset: v2", "        hots: reviews\n        subset: v2"
        )
    )
    assert not result.ok and result.resources == ()
    found = by_field(result.diagnostics)
    typo = found["spec.http[0].route[1].destination.hots"]
    assert typo.message == "unknown field"
    assert typo.source is not None and typo.source.line == 19
    assert (typo.kind, typo.namespace, typo.name) == ("VirtualService", "prod", "reviews")
    assert found["spec.http[0].route[1].destination.host"].message == "required field missing"
    assert typo.format() == (
        "test.yaml:19: VirtualService prod/reviews: "
        "spec.http[0].route[1].destination.hots: unknown field"
    )


def test_reports_all_errors_of_a_document(load: Loader) -> None:
    result = load(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata:
          name: reviews
          extra: 1
        spec:
          host: reviews
          trafficPolicy:
            loadBalancer:
              simple: FASTEST
          subsets:
          - name: v1
            labels: [1]
        bogus: true
        """
    )
    fields = {d.field: d.source.line if d.source else 0 for d in result.diagnostics}
    assert fields == {
        "metadata.extra": 5,
        "spec.trafficPolicy.loadBalancer.simple": 10,
        "spec.subsets[0].labels": 13,
        "bogus": 14,
    }
    simple = by_field(result.diagnostics)["spec.trafficPolicy.loadBalancer.simple"]
    assert "FASTEST" in simple.message and "ROUND_ROBIN" in simple.message


def test_envelope_errors(load: Loader) -> None:
    result = load(
        """
        kind: VirtualService
        metadata:
          namespace: x
        spec: {}
        ---
        apiVersion: networking.istio.io/v1
        kind: Frobnicator
        metadata: {name: a}
        ---
        apiVersion: v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          servers: []
        """
    )
    messages = [(d.source.line if d.source else 0, d.field, d.message) for d in result.diagnostics]
    assert (1, "apiVersion", "required field missing") in messages
    assert (2, "metadata.name", "required field missing") in messages
    assert any(f == "kind" and "unknown kind 'Frobnicator'" in m for _, f, m in messages)
    bad_version = by_field(result.diagnostics)["apiVersion"]
    assert any(
        d.field == "apiVersion"
        and d.source is not None
        and d.source.line == 10
        and "'v1' is not valid for Gateway" in d.message
        for d in result.diagnostics
    ), bad_version
    assert result.resources == ()


def test_union_type_error_is_one_message(load: Loader) -> None:
    result = load(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          ports:
          - port: 80
            targetPort: [1]
        """
    )
    (d,) = result.diagnostics
    assert d.field == "spec.ports[0].targetPort"
    assert d.message == "must be an integer or a string"


def test_string_match_one_of(load: Loader) -> None:
    result = load(VS.replace("        prefix: /api", "        prefix: /api\n        regex: /a.*"))
    (d,) = result.diagnostics
    assert d.field == "spec.http[0].match[0].uri"
    assert "only one of exact, prefix, regex" in d.message


def test_duplicate_keys_are_errors(load: Loader) -> None:
    result = load(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          ports:
          - port: 80
            port: 81
        """
    )
    (d,) = result.diagnostics
    assert d.field == "spec.ports[0].port" and "duplicate key" in d.message
    assert d.source is not None and d.source.line == 7


def test_yaml_syntax_error_has_line() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: [a\nspec: {}\n"
    result = load_text(text, "bad.yaml")
    (d,) = result.diagnostics
    assert d.is_error and d.message.startswith("YAML syntax error")
    assert d.source is not None and d.source.file == "bad.yaml" and d.source.line == 5


def test_documents_before_a_syntax_error_still_load() -> None:
    text = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
        "spec: {ports: [{port: 1}]}\n---\n: : :\n  - x\n"
    )
    result = load_text(text, "f.yaml")
    assert [r.name for r in result.resources] == ["a"]
    assert not result.ok


def test_null_fields_mean_unset(load: Loader) -> None:
    result = load(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: a}
        spec:
          hosts: [a]
          gateways:
          tcp:
          - route:
            - destination: {host: a}
        """
    )
    assert result.ok, result.diagnostics


def test_exported_metadata_and_status_are_tolerated(load: Loader) -> None:
    result = load(
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          namespace: shop
          uid: 0b9c1a3e-1234
          resourceVersion: "99"
          creationTimestamp: 2024-01-02T03:04:05Z
          managedFields: [{manager: kubectl}]
          labels: {app.kubernetes.io/name: web}
        spec:
          clusterIP: 10.96.0.10
          clusterIPs: [10.96.0.10]
          ipFamilies: [IPv4]
          ipFamilyPolicy: SingleStack
          sessionAffinity: None
          type: ClusterIP
          ports:
          - {name: http, port: 80, targetPort: http, protocol: TCP, appProtocol: http}
        status:
          loadBalancer: {}
        """
    )
    assert result.ok, [d.format() for d in result.diagnostics]
    (res,) = result.resources
    assert res.metadata.creation_timestamp == "2024-01-02T03:04:05Z"
    assert res.lines["metadata.labels['app.kubernetes.io/name']"] == 10


def test_json_object_array_and_list_with_lines(tmp_path: Path) -> None:
    doc = (
        '{\n  "apiVersion": "v1",\n  "kind": "Service",\n  "metadata": {"name": "a"},\n'
        '  "spec": {\n    "ports": [\n      {"port": 80, "name": "http"}\n    ]\n  }\n}\n'
    )
    single = tmp_path / "one.json"
    single.write_text(doc)
    result = load_file(single)
    assert result.ok and [r.name for r in result.resources] == ["a"]
    assert result.resources[0].lines["spec.ports[0]"] == 7
    array = tmp_path / "many.json"
    array.write_text("[" + doc + "," + doc.replace('"a"', '"b"') + "]")
    assert [r.name for r in load_file(array).resources] == ["a", "b"]
    as_list = tmp_path / "list.json"
    as_list.write_text('{"kind": "List", "apiVersion": "v1", "items": [' + doc + "]}")
    assert [r.name for r in load_file(as_list).resources] == ["a"]


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    result = load_file(tmp_path / "missing.yaml")
    (d,) = result.diagnostics
    assert d.is_error and "cannot read" in d.message


def test_semantic_errors_drop_the_resource_but_warnings_do_not(load: Loader) -> None:
    bad = load(VS.replace("attempts: 2", "attempts: -1"))
    assert bad.resources == () and not bad.ok
    assert by_field(bad.diagnostics)["spec.http[0].retries.attempts"].source is not None
    warned = load(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: se}
        spec:
          hosts: [db.internal.example]
          ports: [{number: 5432, name: pg, protocol: TCP}]
          resolution: STATIC
        """
    )
    assert warned.ok and len(warned.resources) == 1
    assert [d.is_error for d in warned.diagnostics] == [False]
