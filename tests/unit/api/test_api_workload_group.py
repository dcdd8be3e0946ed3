"""WorkloadGroup: Istio's schema, unknown fields and semantic errors with their lines."""

from __future__ import annotations

from pilotfish.api.loader import load_text
from pilotfish.api.networking.workload_group import WorkloadGroupSpec

GROUP = """\
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: ratings-vm, namespace: default}
spec:
  metadata:
    labels: {app: ratings}
  template:
    serviceAccount: bookinfo-ratings
    network: vm-net
    ports: {http: 9080}
  probe:
    periodSeconds: 5
    httpGet: {path: /ready, port: 9080}
"""


def test_istio_fields_load_and_the_probe_is_flagged_as_not_run() -> None:
    result = load_text(GROUP, "group.yaml")
    [resource] = result.resources
    spec = resource.spec
    assert isinstance(spec, WorkloadGroupSpec)
    assert spec.metadata.labels == {"app": "ratings"}
    assert (spec.template.service_account, spec.template.network) == ("bookinfo-ratings", "vm-net")
    assert spec.template.ports == {"http": 9080}
    assert [d.format() for d in result.diagnostics] == [
        "group.yaml:11: WorkloadGroup default/ratings-vm: spec.probe: warning: "
        "is not run by Pilotfish: a joined workload is ready while its proxy is connected"
    ]


def test_unknown_field_and_an_address_are_errors_at_their_lines() -> None:
    text = GROUP.replace("    network: vm-net\n", "    network: vm-net\n    adress: 10.0.0.1\n")
    assert [d.format() for d in load_text(text, "g.yaml").diagnostics if d.is_error] == [
        "g.yaml:10: WorkloadGroup default/ratings-vm: spec.template.adress: unknown field"
    ]
    text = GROUP.replace(
        "    network: vm-net\n", "    address: 10.0.0.1\n    ports: {Bad_Name: 0}\n"
    )
    text = text.replace("    ports: {http: 9080}\n", "")
    errors = [d.format() for d in load_text(text, "g.yaml").diagnostics if d.is_error]
    assert errors[0] == (
        "g.yaml:9: WorkloadGroup default/ratings-vm: spec.template.address: "
        "address must be empty: each member has its own"
    )
    assert len(errors) == 3  # and the port's name and number
