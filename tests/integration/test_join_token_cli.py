"""``pilotfish join-token create`` against a real ``pilotfish control-plane`` process.

The admin creates the token through the HTTP API (the API token is required);
the file it writes (0600) holds what a joining host needs, and the token in
it gets a certificate from the control plane's CA port exactly once.
"""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilotfish.agent.ca_client import CaAuthError, CaClient
from pilotfish.runtime.ports import free_port
from polling import poll

PILOTFISH = [sys.executable, "-m", "pilotfish.cli.main"]
DEADLINE = 30.0

# ratings-vm, template.serviceAccount bookinfo-ratings.
GROUP = (
    Path(__file__).resolve().parents[1] / "testdata" / "api" / "bookinfo" / "workload-group.yaml"
)


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


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PILOTFISH, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[tuple[Path, str, int]]:
    """(its directory, API URL, CA port) of a control plane with a CA, running."""
    work = tmp_path / "cp"
    (work / "config").mkdir(parents=True)
    (work / "config" / "group.yaml").write_text(GROUP.read_text())
    http, ca = free_port(), free_port()
    argv = [
        *PILOTFISH,
        "control-plane",
        "--config",
        "config",
        "--xds-port",
        str(free_port()),
        "--http-port",
        str(http),
        "--ca-dir",
        "ca",
        "--secure-port",
        str(ca),
        "--xds-mtls-port",
        str(free_port()),
    ]
    log = tmp_path / "cp.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=work, stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        return (work / ".pilotfish" / "api-token").exists() and "control plane:" in log.read_text()

    try:
        poll(ready, "the control plane to start", DEADLINE, interval=0.05)
        yield work, f"http://127.0.0.1:{http}", ca
    finally:
        proc.terminate()
        proc.wait(DEADLINE)


def test_an_admin_creates_a_token_that_gets_one_certificate(
    tmp_path: Path, control_plane: tuple[Path, str, int]
) -> None:
    work, url, ca_port = control_plane
    out = tmp_path / "host" / "join.token"
    out.parent.mkdir()
    args = ("--namespace", "default", "--workload-group", "ratings-vm", "--ttl", "10m")
    created = _cli(work, "join-token", "create", *args, "-o", str(out), "--control-plane", url)
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
    refused = _cli(elsewhere, "join-token", "create", *args, "-o", "t", "--control-plane", url)
    assert refused.returncode == 1 and "no API token was found" in refused.stderr
    assert not (elsewhere / "t").exists()
    # A group that does not exist, a service account the group does not have.
    for extra, why in (
        (("--workload-group", "nope"), "WorkloadGroup default/nope does not exist"),
        (("--workload-group", "ratings-vm", "--service-account", "x"), "is not WorkloadGroup"),
    ):
        bad = _cli(
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
