"""The converters' one-entry cache (translate/converter_cache.py): an equal input
gives back the same result, a change to a kind a converter reads recomputes it,
a change to another kind does not."""

from __future__ import annotations

from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.translate.conversion import Conversion, ConversionContext
from pilotfish.translate.converter_cache import memoized
from pilotfish.translate.ingress import convert_ingresses

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, annotations: {kubernetes.io/ingress.class: istio}}
spec:
  defaultBackend: {service: {name: web, port: {number: 80}}}
"""
VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other}
spec: {hosts: [other], http: [{route: [{destination: {host: other}}]}]}
"""
ENTRY = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: gw, namespace: istio-system}
spec: {address: 10.1.2.3, labels: {istio: ingressgateway}}
"""


def _load(text: str) -> tuple[Resource, ...]:
    result = load_text(text, "cache.yaml")
    assert not result.diagnostics
    return result.resources


def test_equal_inputs_give_the_same_result_and_reads_decide_what_counts() -> None:
    calls: list[int] = []

    def convert(resources: tuple[Resource, ...], ctx: ConversionContext) -> Conversion:
        calls.append(len(resources))
        return Conversion()

    cached = memoized(lambda r: r.kind == "Ingress", convert)
    ingress, vs = _load(INGRESS), _load(VS)
    ctx = ConversionContext()
    first = cached((*ingress, *vs), ctx)
    assert cached((*ingress, *vs), ctx) is first
    assert cached((*ingress,), ctx) is first  # a kind it does not read changed
    assert calls == [1]  # and it only ever saw the Ingress
    cached((*ingress, *_load(INGRESS.replace("web", "shop"))), ctx)
    cached((*ingress,), ConversionContext(domain_suffix="example.internal"))
    assert calls == [1, 2, 1]


def test_the_ingress_converter_sees_a_new_gateway_address() -> None:
    ingress, entry = _load(INGRESS), _load(ENTRY)
    ctx = ConversionContext()
    before = convert_ingresses(ingress, ctx)
    after = convert_ingresses((*ingress, *entry), ctx)
    assert after is not before
    [status] = after.statuses.values()
    assert status == {"loadBalancer": {"ingress": [{"ip": "10.1.2.3"}]}}
    assert convert_ingresses((*ingress, *entry, *_load(VS)), ctx) is after


def test_a_same_length_list_is_checked_where_it_differs_only() -> None:
    calls: list[int] = []
    asked: list[str] = []

    def convert(resources: tuple[Resource, ...], ctx: ConversionContext) -> Conversion:
        calls.append(len(resources))
        return Conversion()

    def reads(resource: Resource) -> bool:
        asked.append(resource.name)
        return resource.kind == "Ingress"

    cached = memoized(reads, convert)
    ingress, vs, entry = _load(INGRESS), _load(VS), _load(ENTRY)
    ctx = ConversionContext()
    first = cached((*ingress, *vs, *entry), ctx)
    asked.clear()
    # Another VirtualService object in the same place: only it (old and new) is asked.
    again = cached((*ingress, *_load(VS.replace("other]", "other, more]")), *entry), ctx)
    assert again is first and asked == ["other", "other"] and calls == [1]
    # An equal but new Ingress object is asked about, and compared: still no conversion.
    assert cached((*_load(INGRESS), *vs, *entry), ctx) is first and calls == [1]
    # A changed Ingress in the same place is converted.
    changed = cached((*_load(INGRESS.replace("number: 80", "number: 81")), *vs, *entry), ctx)
    assert changed is not first and calls == [1, 1]
