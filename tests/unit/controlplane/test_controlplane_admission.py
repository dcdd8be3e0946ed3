"""``admission.judge``: what refuses a batch, and what only gets reported."""

from __future__ import annotations

from pilotfish.api.diagnostics import Severity
from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.controlplane.admission import judge

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
"""
DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: {host}
  subsets:
  - name: v1
    labels:
      version: v1
"""


def vs(subset: str, name: str = "reviews") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts:
  - {name}
  http:
  - route:
    - destination:
        host: reviews
        subset: {subset}
"""


def load(text: str, file: str = "applied.yaml") -> list[Resource]:
    result = load_text(text, file)
    assert result.ok, [d.format() for d in result.diagnostics]
    return list(result.resources)


def test_a_missing_subset_is_an_error_at_istios_level() -> None:
    verdict = judge(load(vs("v9")), load(SERVICE + "---\n" + DR.format(host="reviews"), "s.yaml"))
    assert verdict.refused
    [error] = verdict.errors
    assert (error.code, error.severity, error.kind, error.name) == (
        "IST0101",
        Severity.ERROR,
        "VirtualService",
        "reviews",
    )
    assert error.field == "spec.http[0].route[0].destination.subset"
    assert error.source is not None and (error.source.file, error.source.line) == (
        "applied.yaml",
        12,
    )


def test_objects_applied_together_see_each_other() -> None:
    verdict = judge(load(vs("v1") + "---\n" + DR.format(host="reviews")), load(SERVICE))
    assert not verdict.refused, [d.format() for d in verdict.findings]


def test_the_applied_object_replaces_the_stored_one() -> None:
    # The store's DestinationRule lacks v2; the applied one defines it.
    stored = load(SERVICE + "---\n" + DR.format(host="reviews"), "s.yaml")
    fixed = DR.format(host="reviews") + "  - name: v2\n    labels:\n      version: v2\n"
    assert not judge(load(vs("v2") + "---\n" + fixed), stored).refused
    assert judge(load(vs("v2")), stored).refused


def test_findings_about_stored_objects_do_not_count() -> None:
    broken = load(vs("v9", name="ratings"), "old.yaml")  # already stored, already wrong
    verdict = judge(load(SERVICE), broken)
    assert verdict.findings == ()
    assert not verdict.refused


def test_warnings_are_reported_without_refusing() -> None:
    verdict = judge(load(DR.format(host="nowhere")), [])
    assert not verdict.refused
    assert [(d.code, d.severity) for d in verdict.findings] == [("IST0174", Severity.WARNING)]


def test_findings_on_cluster_scoped_objects_are_theirs() -> None:
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: books\n"
    verdict = judge(load(namespace), [])
    # Istio's injection note (IST0102) on the Namespace, named without a namespace.
    assert [(d.code, d.kind, d.namespace, d.name) for d in verdict.findings] == [
        ("IST0102", "Namespace", "", "books")
    ]
    assert not verdict.refused


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1
  labels: {app: reviews, version: v1}
spec:
  containers: [{name: app, image: reviews}]
"""


def test_a_subset_that_selects_no_pods_is_reported_and_does_not_refuse() -> None:
    # The canary order: the DestinationRule names v2 before any v2 pod runs.
    canary = DR.format(host="reviews") + "  - name: v2\n    labels:\n      version: v2\n"
    verdict = judge(load(canary), load(SERVICE) + load(POD, "pod.yaml"))
    assert [(d.code, d.severity, d.field) for d in verdict.findings] == [
        ("IST0173", Severity.ERROR, "spec.subsets[1].labels")
    ]
    assert verdict.errors == [] and not verdict.refused
    # A real inconsistency in the same apply still refuses it.
    both = judge(load(canary) + load(vs("v9"), "vs.yaml"), load(SERVICE) + load(POD, "pod.yaml"))
    assert [d.code for d in both.errors] == ["IST0101"] and both.refused
