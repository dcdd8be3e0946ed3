"""Join tokens: single use, expiry, scope and renewal, through the CA's real gRPC port.

Each "replica" is a ``MeshCa`` on one CA directory (join-token and pod-token
stores in it, as ``pilotfish control-plane --ca-dir`` builds it) served by a
``CaPort`` on loopback with the mesh's TLS; the client is the agent's own
``CaClient``, which keeps the renewal token in its token file.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from ca_helpers import ec_key, make_csr
from cryptography import x509
from prometheus_client import CollectorRegistry

from pilotfish.agent.ca_client import CaAuthError, CaClient
from pilotfish.ca import (
    CONTROL_PLANE_DNS_NAME,
    JOIN_TOKEN_STORE_FILE,
    CertificateAuthority,
    CreateCertificateRequest,
    JoinTokenRefused,
    JoinTokens,
    MeshCa,
    TokenRegistry,
    UnauthenticatedError,
)
from pilotfish.ca.port import CaPort
from pilotfish.ca.tokens import TOKEN_STORE_FILE, token_digest
from pilotfish.xds.server import TlsServerConfig
from pilotfish.xds.server.tls import server_tls_credentials

TD = "cluster.local"
RATINGS = f"spiffe://{TD}/ns/default/sa/bookinfo-ratings"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Replica:
    ca: MeshCa
    port: CaPort
    root_pem: bytes

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port.port}"


async def _start_replica(ca_dir: Path, clock: Callable[[], float]) -> Replica:
    authority = CertificateAuthority.load_or_create(ca_dir, TD)
    ca = MeshCa(
        authority,
        CollectorRegistry(),
        tokens=TokenRegistry(ca_dir / TOKEN_STORE_FILE),
        join_tokens=JoinTokens(ca_dir / JOIN_TOKEN_STORE_FILE, clock=clock),
        default_ttl=datetime.timedelta(hours=1),
    )
    server = authority.issue_server_cert((CONTROL_PLANE_DNS_NAME,), ("127.0.0.1",))
    tls = TlsServerConfig(
        cert_chain_pem="".join(server.issued.chain_pem).encode("ascii"),
        key_pem=server.key_pem,
        root_pem=authority.root_pem.encode("ascii"),
        trust_domain=TD,
    )
    port = CaPort(ca.service.handler(), server_tls_credentials(tls))
    await port.start("127.0.0.1", 0)
    return Replica(ca, port, authority.root_pem.encode("ascii"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def replicas(tmp_path: Path, clock: Clock) -> AsyncIterator[list[Replica]]:
    started = [await _start_replica(tmp_path / "ca", clock) for _ in range(2)]
    try:
        yield started
    finally:
        for replica in started:
            await replica.port.close(0)


def _token_file(tmp_path: Path, name: str, token: str) -> Path:
    path = tmp_path / name
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


async def _request(replica: Replica, token_file: Path, uri: str = RATINGS) -> x509.Certificate:
    client = CaClient(replica.target, replica.root_pem, token_file)
    try:
        csr = make_csr(ec_key(), (uri,)).decode("ascii")
        response = await client.create_certificate(csr)
    finally:
        await client.close()
    return x509.load_pem_x509_certificate(response.cert_chain[0].encode("ascii"))


def _uri(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


# -- the registry itself ----------------------------------------------------------------


def test_only_digests_are_stored_and_nothing_shows_the_token(tmp_path: Path) -> None:
    store = tmp_path / "ca" / JOIN_TOKEN_STORE_FILE
    tokens = JoinTokens(store)
    new = tokens.create("default", "bookinfo-ratings", "ratings", 3600)
    text = store.read_text()
    assert new.token not in text and new.token not in repr(new) and new.token not in repr(tokens)
    assert token_digest(new.token) in text
    assert store.stat().st_mode & 0o777 == 0o600
    [grant] = json.loads(text)["grants"]
    assert (grant["namespace"], grant["serviceAccount"], grant["workloadGroup"]) == (
        "default",
        "bookinfo-ratings",
        "ratings",
    )
    assert grant["usedAt"] is None


def test_expiry_and_forgetting_follow_the_clock(clock: Clock) -> None:
    tokens = JoinTokens(clock=clock)
    new = tokens.create("default", "sa", "", 60)
    clock.now += 59
    assert tokens.check(new.token) is not None
    clock.now += 1
    with pytest.raises(JoinTokenRefused, match="join token expired"):
        tokens.check(new.token)
    with pytest.raises(JoinTokenRefused, match="expired"):
        tokens.consume(new.token)
    # Long after expiry the grant is purged at the next change: unknown, not "expired".
    clock.now += 86400 + 1
    tokens.create("default", "sa", "", 60)
    assert tokens.check(new.token) is None
    assert tokens.check("pfjoin-guessed") is None


def test_bad_grants_are_refused_at_creation() -> None:
    tokens = JoinTokens()
    with pytest.raises(ValueError):
        tokens.create("Not_A_Namespace", "sa", "", 60)
    with pytest.raises(ValueError):
        tokens.create("default", "sa", "", 0)


def test_threads_racing_to_consume_one_token_have_one_winner(tmp_path: Path) -> None:
    store = tmp_path / "ca" / JOIN_TOKEN_STORE_FILE
    # Two registries on one store stand for two replicas; four threads race.
    registries = [JoinTokens(store), JoinTokens(store)]
    token = registries[0].create("default", "sa", "", 600).token
    barrier = threading.Barrier(4)

    def race(i: int) -> str:
        barrier.wait()
        try:
            registries[i % 2].consume(token)
        except JoinTokenRefused as exc:
            return exc.reason
        return "won"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(race, range(4)))
    assert outcomes == ["join_token_used"] * 3 + ["won"]


# -- through the CA's gRPC port ----------------------------------------------------------


async def test_first_csr_spends_the_token_and_renewals_use_the_new_one(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    first = replicas[0]
    join = first.ca.join_tokens.create("default", "bookinfo-ratings", "ratings", 3600).token
    agent_file = _token_file(tmp_path, "agent-token", join)
    cert = await _request(first, agent_file)
    assert _uri(cert) == [RATINGS]
    renewal = agent_file.read_text().strip()
    assert renewal != join and agent_file.stat().st_mode & 0o777 == 0o600
    owner = first.ca.tokens.lookup(renewal)
    assert owner is not None and owner.pod.startswith("ratings-") and owner.namespace == "default"
    # Renewal with the new token, on the other replica too (shared pod-token store).
    assert _uri(await _request(replicas[1], agent_file)) == [RATINGS]
    assert agent_file.read_text().strip() == renewal  # no new token on a renewal
    # The join token again: refused, with why, and the message never holds the token.
    again = _token_file(tmp_path, "again", join)
    for replica in replicas:
        with pytest.raises(CaAuthError, match="join token already used") as info:
            await _request(replica, again)
        assert info.value.code == "UNAUTHENTICATED" and join not in str(info.value)
    rejected = first.ca.metrics.registry.get_sample_value(
        "pilotfish_ca_certificates_rejected_total", {"reason": "join_token_used"}
    )
    assert rejected == 1


async def test_wrong_identity_is_denied_and_does_not_spend_the_token(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    replica = replicas[0]
    join = replica.ca.join_tokens.create("default", "bookinfo-ratings", "", 3600).token
    agent_file = _token_file(tmp_path, "agent-token", join)
    for uri in (f"spiffe://{TD}/ns/default/sa/productpage", f"spiffe://{TD}/ns/other/sa/x"):
        with pytest.raises(CaAuthError) as info:
            await _request(replica, agent_file, uri)
        assert info.value.code == "PERMISSION_DENIED"
    assert agent_file.read_text().strip() == join
    assert _uri(await _request(replica, agent_file)) == [RATINGS]


async def test_expired_token_is_refused(
    tmp_path: Path, replicas: list[Replica], clock: Clock
) -> None:
    join = replicas[0].ca.join_tokens.create("default", "bookinfo-ratings", "", 60).token
    clock.now += 61
    with pytest.raises(CaAuthError, match="join token expired") as info:
        await _request(replicas[1], _token_file(tmp_path, "t", join))
    assert info.value.code == "UNAUTHENTICATED"


async def test_two_csrs_racing_on_two_replicas_have_one_winner(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    for round_ in range(5):
        join = replicas[0].ca.join_tokens.create("default", "bookinfo-ratings", "", 600).token
        files = [_token_file(tmp_path, f"race-{round_}-{i}", join) for i in range(2)]
        outcomes = await asyncio.gather(
            *(_request(r, f) for r, f in zip(replicas, files, strict=True)),
            return_exceptions=True,
        )
        wins = [o for o in outcomes if isinstance(o, x509.Certificate)]
        losses = [o for o in outcomes if isinstance(o, CaAuthError)]
        assert len(wins) == 1 and len(losses) == 1, outcomes
        assert "join token already used" in str(losses[0])


async def test_a_restarted_ca_keeps_renewal_tokens_and_spent_join_tokens(
    tmp_path: Path, clock: Clock
) -> None:
    ca_dir = tmp_path / "ca"
    replica = await _start_replica(ca_dir, clock)
    try:
        used = replica.ca.join_tokens.create("default", "bookinfo-ratings", "", 600).token
        unused = replica.ca.join_tokens.create("default", "bookinfo-ratings", "", 600).token
        agent_file = _token_file(tmp_path, "agent-token", used)
        await _request(replica, agent_file)
    finally:
        await replica.port.close(0)
    restarted = await _start_replica(ca_dir, clock)
    try:
        assert _uri(await _request(restarted, agent_file)) == [RATINGS]
        with pytest.raises(CaAuthError, match="already used"):
            await _request(restarted, _token_file(tmp_path, "again", used))
        assert _uri(await _request(restarted, _token_file(tmp_path, "new", unused))) == [RATINGS]
    finally:
        await restarted.port.close(0)


def test_csrs_racing_in_threads_through_two_services_have_one_winner(
    tmp_path: Path, clock: Clock
) -> None:
    """Check, sign and consume interleave for real here (the gRPC handlers of one
    event loop run one after the other): only one consume wins."""
    ca_dir = tmp_path / "ca"
    cas = [
        MeshCa(
            CertificateAuthority.load_or_create(ca_dir, TD),
            CollectorRegistry(),
            tokens=TokenRegistry(ca_dir / TOKEN_STORE_FILE),
            join_tokens=JoinTokens(ca_dir / JOIN_TOKEN_STORE_FILE, clock=clock),
        )
        for _ in range(2)
    ]
    csrs = [make_csr(ec_key(), (RATINGS,)).decode("ascii") for _ in range(4)]
    for _ in range(5):
        join = cas[0].join_tokens.create("default", "bookinfo-ratings", "", 600).token
        barrier = threading.Barrier(4)

        def race(i: int, join: str = join, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            request = CreateCertificateRequest(csr=csrs[i], token=join)
            try:
                response = cas[i % 2].service.create_certificate(request)
            except UnauthenticatedError as exc:
                return str(exc)
            assert response.renewal_token is not None
            return "won"

        with ThreadPoolExecutor(4) as pool:
            outcomes = sorted(pool.map(race, range(4)))
        assert outcomes == ["join token already used"] * 3 + ["won"]
