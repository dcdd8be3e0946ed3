"""Control-plane replicas on one CA directory share one root and one token registry.

Each replica is its own ``MeshCa`` (authority loaded from the directory, token
registry on the directory's store), as two ``pilotfish control-plane``
processes given the same ``--ca-dir`` are.
"""

from __future__ import annotations

import datetime
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ca_helpers import ec_key, make_csr
from cryptography import x509
from prometheus_client import CollectorRegistry

from pilotfish.ca import CertificateAuthority, MeshCa, TokenRegistry
from pilotfish.ca.errors import CaError
from pilotfish.ca.protocol import CreateCertificateRequest
from pilotfish.ca.tokens import TOKEN_STORE_FILE

TRUST_DOMAIN = "cluster.local"


def _replica(ca_dir: Path) -> MeshCa:
    authority = CertificateAuthority.load_or_create(ca_dir, TRUST_DOMAIN)
    return MeshCa(
        authority,
        CollectorRegistry(),
        tokens=TokenRegistry(ca_dir / TOKEN_STORE_FILE),
        default_ttl=datetime.timedelta(hours=1),
    )


def _issue(ca: MeshCa, token: str, account: str) -> x509.Certificate:
    uri = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/{account}"
    csr = make_csr(ec_key(), (uri,)).decode("ascii")
    response = ca.service.create_certificate(CreateCertificateRequest(csr=csr, token=token))
    return x509.load_pem_x509_certificate(response.cert_chain[0].encode("ascii"))


def test_replicas_started_together_create_one_root(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    start = threading.Barrier(4)

    def load(_: int) -> str:
        start.wait()
        return CertificateAuthority.load_or_create(ca_dir, TRUST_DOMAIN).root_pem

    with ThreadPoolExecutor(4) as pool:
        roots = set(pool.map(load, range(4)))
    assert len(roots) == 1
    assert (ca_dir / "root-key.pem").stat().st_mode & 0o777 == 0o600
    assert (ca_dir / "root-cert.pem").read_text() in roots


def test_certificates_of_two_replicas_verify_against_one_trust_bundle(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    first, second = _replica(ca_dir), _replica(ca_dir)
    assert first.root_pem == second.root_pem
    bundle = x509.load_pem_x509_certificates((ca_dir / "root-cert.pem").read_bytes())
    assert len(bundle) == 1
    [root] = bundle

    # The runtime registers each pod's token with one replica only; the other
    # accepts it, since the token store is shared.
    productpage = first.tokens.register("default", "productpage", "productpage-1.default")
    reviews = first.tokens.register("default", "reviews", "reviews-1.default")
    leaf_one = _issue(first, productpage, "productpage")
    leaf_two = _issue(second, reviews, "reviews")

    for leaf in (leaf_one, leaf_two):
        leaf.verify_directly_issued_by(root)
        assert leaf.issuer == root.subject
    assert leaf_one.serial_number != leaf_two.serial_number
    # The control plane's own serving certificates (xDS over mTLS) chain there too.
    for ca in (first, second):
        server = ca.authority.issue_server_cert(("pilotfish-control-plane",), ("127.0.0.1",))
        server.issued.certificate.verify_directly_issued_by(root)


def test_a_revocation_on_one_replica_holds_on_the_other(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    first, second = _replica(ca_dir), _replica(ca_dir)
    token = first.tokens.register("default", "reviews", "reviews-1.default")
    assert second.tokens.lookup(token) is not None
    second.forget_pod("reviews-1.default")
    assert first.tokens.lookup(token) is None
    with pytest.raises(CaError):
        _issue(first, token, "reviews")


def test_registrations_on_two_replicas_are_both_kept(tmp_path: Path) -> None:
    store = tmp_path / "ca" / TOKEN_STORE_FILE
    first, second = TokenRegistry(store), TokenRegistry(store)
    start = threading.Barrier(2)

    def register(registry: TokenRegistry, prefix: str) -> list[str]:
        start.wait()
        return [registry.register("default", "sa", f"{prefix}-{i}") for i in range(20)]

    with ThreadPoolExecutor(2) as pool:
        on_first = pool.submit(register, first, "a")
        on_second = pool.submit(register, second, "b")
        made = [*on_first.result(), *on_second.result()]
    fresh = TokenRegistry(store)
    assert len(fresh) == 40
    assert all(fresh.lookup(t) is not None for t in made)
    assert all(first.lookup(t) is not None and second.lookup(t) is not None for t in made)
