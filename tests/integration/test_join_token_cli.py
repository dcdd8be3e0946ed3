"""``pilotfish join-token create`` against a real ``pilotfish control-plane`` process.

The admin creates the token through the HTTP API (the API token is required);
the file it writes (0600) holds what a joining host needs, and the token in
it gets a certificate from the control plane's CA port exactly once.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joinkit import ControlPlaneProc, cli, control_plane

from pilotfish.agent.ca_client import CaAuthError, CaClient


def csr_for(namespace: str, account: str) -> str:
    """A CSR for the workload identity, as an agent makes it."""
    uri = x509.UniformResourceIdentifier(f"spiffe://cluster.local/ns/{namespace}/sa/{account}")
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([uri]), critical=True)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode("ascii")
    )


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlaneProc]:
    with control_plane(tmp_path) as running:
        yield running


def test_an_admin_creates_a_token_that_gets_one_certificate(
    tmp_path: Path, cp: ControlPlaneProc
) -> None:
    work, url, ca_port = cp.work, cp.url, cp.mtls_port + 1
    out = tmp_path / "host" / "join.token"
    out.parent.mkdir()
    args = ("--namespace", "default", "--workload-group", "ratings-vm", "--ttl", "10m")
    created = cli(work, "join-token", "create", *args, "-o", str(out), "--control-plane", url)
    assert created.returncode == 0, created.stderr
    assert "default/bookinfo-ratings, WorkloadGroup ratings-vm" in created.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = json.loads(out.read_text())
    assert doc["token"] not in created.stdout + created.stderr
    assert doc["serviceAccount"] == "bookinfo-ratings"  # from the group's template
    assert doc["rootCert"] == (work / "ca" / "root-cert.pem").read_text()

    # Without the API token (another directory): refused, nothing written.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = cli(elsewhere, "join-token", "create", *args, "-o", "t", "--control-plane", url)
    assert refused.returncode == 1 and "no API token was found" in refused.stderr
    assert not (elsewhere / "t").exists()
    # A group that does not exist, a service account the group does not have.
    for extra, why in (
        (("--workload-group", "nope"), "WorkloadGroup default/nope does not exist"),
        (("--workload-group", "ratings-vm", "--service-account", "x"), "is not WorkloadGroup"),
    ):
        bad = cli(
            work, "join-token", "create", "-n", "default", *extra, "-o", "t", "--control-plane", url
        )
        assert bad.returncode == 1 and why in bad.stderr, bad.stderr

    async def redeem() -> list[str]:
        outcomes = []
        for attempt in range(2):
            token_file = tmp_path / f"agent-{attempt}.token"
            token_file.write_text(doc["token"])
            client = CaClient(f"127.0.0.1:{ca_port}", doc["rootCert"].encode(), token_file)
            try:
                await client.create_certificate(csr_for("default", "bookinfo-ratings"))
                outcomes.append("issued")
            except CaAuthError as exc:
                outcomes.append(str(exc))
            finally:
                await client.close()
        return outcomes

    first, second = asyncio.run(redeem())
    assert first == "issued"
    assert "join token already used" in second
