"""CertificateService without gRPC: tokens -> identity, records, metrics; the JSON codec."""

from __future__ import annotations

import datetime

import pytest
from ca_helpers import make_csr
from prometheus_client import CollectorRegistry

from pilotfish.ca import (
    CertificateAuthority,
    CreateCertificateRequest,
    CreateCertificateResponse,
    IdentityMismatchError,
    MeshCa,
    ProtocolError,
    UnauthenticatedError,
)

BOOKINFO = "spiffe://cluster.local/ns/default/sa/bookinfo"


@pytest.fixture
def mesh_ca() -> MeshCa:
    return MeshCa(
        CertificateAuthority.create_root("cluster.local"),
        CollectorRegistry(),
        default_ttl=datetime.timedelta(hours=2),
    )


def _value(ca: MeshCa, name: str, **labels: str) -> float:
    value = ca.metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name} {labels}"
    return value


def test_issue_records_and_counts(mesh_ca: MeshCa) -> None:
    token = mesh_ca.tokens.register("default", "bookinfo", "productpage.default")
    response = mesh_ca.service.create_certificate(
        CreateCertificateRequest(csr=make_csr().decode(), token=token)
    )
    assert response.root_cert == mesh_ca.root_pem
    [record] = mesh_ca.issued()
    assert (record.pod, record.namespace, record.service_account) == (
        "productpage.default",
        "default",
        "bookinfo",
    )
    assert record.spiffe_id == BOOKINFO
    assert record.not_after == response.expires_at
    assert _value(mesh_ca, "pilotfish_ca_certificates_issued_total") == 1
    # valid for 2 hours: not expiring within the hour yet
    assert _value(mesh_ca, "pilotfish_ca_certificates_expiring") == 0
    assert mesh_ca.records.expiring(now=response.expires_at - 60) == 1


def test_requested_ttl_is_capped(mesh_ca: MeshCa) -> None:
    token = mesh_ca.tokens.register("default", "bookinfo", "p")
    short = mesh_ca.service.create_certificate(
        CreateCertificateRequest(csr=make_csr().decode(), token=token, ttl_seconds=600)
    )
    long = mesh_ca.service.create_certificate(
        CreateCertificateRequest(csr=make_csr().decode(), token=token, ttl_seconds=10**7)
    )
    now = datetime.datetime.now(datetime.UTC).timestamp()
    assert 500 < short.expires_at - now <= 600
    assert 7100 < long.expires_at - now <= 7200
    assert len(mesh_ca.issued()) == 1  # newest per pod only
    assert _value(mesh_ca, "pilotfish_ca_certificates_expiring") == 0


def test_refusals_are_counted_by_reason(mesh_ca: MeshCa) -> None:
    token = mesh_ca.tokens.register("default", "other", "p")
    with pytest.raises(UnauthenticatedError):
        mesh_ca.service.create_certificate(
            CreateCertificateRequest(csr=make_csr().decode(), token="nope")
        )
    with pytest.raises(IdentityMismatchError):
        mesh_ca.service.create_certificate(
            CreateCertificateRequest(csr=make_csr().decode(), token=token)
        )
    rejected = "pilotfish_ca_certificates_rejected_total"
    assert _value(mesh_ca, rejected, reason="unauthenticated") == 1
    assert _value(mesh_ca, rejected, reason="identity_mismatch") == 1
    assert _value(mesh_ca, "pilotfish_ca_certificates_issued_total") == 0
    assert mesh_ca.issued() == []


def test_forget_pod(mesh_ca: MeshCa) -> None:
    token = mesh_ca.tokens.register("default", "bookinfo", "p")
    request = CreateCertificateRequest(csr=make_csr().decode(), token=token)
    mesh_ca.service.create_certificate(request)
    mesh_ca.forget_pod("p")
    assert mesh_ca.issued() == []
    assert mesh_ca.tokens.lookup(token) is None


def test_codec_round_trip() -> None:
    request = CreateCertificateRequest(csr="PEM", token="secret", ttl_seconds=60)
    assert CreateCertificateRequest.decode(request.encode()) == request
    assert "secret" not in repr(request)
    response = CreateCertificateResponse(cert_chain=("a", "b"), root_cert="r", expires_at=5)
    assert CreateCertificateResponse.decode(response.encode()) == response


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"token": "t"}',
        b'{"csr": "x", "token": 5}',
        b'{"csr": "x", "ttl_seconds": -1}',
        b'{"csr": "x", "ttl_seconds": true}',
        b"{" + b" " * 70_000 + b"}",
    ],
)
def test_bad_requests_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        CreateCertificateRequest.decode(payload)
