from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.api.kinds import (
    API_VERSIONS,
    KIND_INFO,
    KINDS,
    kind_for_plural,
    plural,
    resolve_document_kind,
)
from pilotfish.api.loader import load_file
from pilotfish.api.networking.destination_rule import DestinationRuleSpec
from pilotfish.api.networking.service_entry import ServiceEntrySpec

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "testdata" / "api").rglob("*.*"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_loads_without_diagnostics(path: Path) -> None:
    result = load_file(path)
    assert result.diagnostics == (), [d.format() for d in result.diagnostics]
    assert result.resources


def test_samples_cover_every_kind() -> None:
    kinds = {r.kind for path in SAMPLES for r in load_file(path).resources}
    assert kinds == set(KINDS)


def test_sample_fields_by_snake_case_rule() -> None:
    dr_file = next(p for p in SAMPLES if p.name == "destination-rules.yaml")
    reviews = next(r for r in load_file(dr_file).resources if r.name == "reviews")
    spec = reviews.spec
    assert isinstance(spec, DestinationRuleSpec)
    assert spec.traffic_policy is not None
    od = spec.traffic_policy.outlier_detection
    assert od is not None and od.consecutive_5xx_errors == 7
    pool = spec.traffic_policy.connection_pool
    assert pool is not None and pool.http is not None and pool.http.http1_max_pending_requests == 10
    ext = next(p for p in SAMPLES if p.name == "external.json")
    se = next(r for r in load_file(ext).resources if r.kind == "ServiceEntry")
    assert isinstance(se.spec, ServiceEntrySpec) and se.spec.resolution == "DNS"


def test_plurals_round_trip() -> None:
    for kind, info in KIND_INFO.items():
        qualified = f"{info.plural}.{info.group}" if info.group else info.plural
        assert kind_for_plural(qualified) == kind
        assert kind_for_plural(info.plural, info.group) == kind
        assert kind_for_plural(kind.lower()) == kind
    assert plural("ServiceEntry") == "serviceentries"
    with pytest.raises(KeyError):
        kind_for_plural("widgets")


def test_kubectl_qualified_names_tell_groups_apart() -> None:
    assert kind_for_plural("gateways.networking.istio.io") == "Gateway"
    assert kind_for_plural("gateways") == "Gateway"  # Istio's, as before
    with pytest.raises(KeyError):
        kind_for_plural("gateways.example.com")


def test_document_kinds_resolve_by_api_version() -> None:
    assert resolve_document_kind("networking.istio.io/v1beta1", "Gateway") == "Gateway"
    assert resolve_document_kind("v1", "Widget") is None
    for kind, info in KIND_INFO.items():
        for version in info.api_versions:
            assert resolve_document_kind(version, info.written_kind) == kind
    assert len(set(KIND_INFO)) == len(KIND_INFO)


def test_api_versions() -> None:
    assert API_VERSIONS["Service"] == frozenset({"v1"})
    assert "networking.istio.io/v1alpha3" in API_VERSIONS["VirtualService"]
    assert set(API_VERSIONS) == set(KINDS)
