"""Gateway credentials over SDS, to their owners only: a real control plane with its CA,
a real gateway agent and Envoy on the xDS mTLS port, raw ADS clients as the intruders.

- The gateway serves the ``credentialName`` certificate it got over SDS on its
  ADS stream (a real TLS handshake shows the certificate's serial), and no
  LDS or CDS response anyone receives holds a private key.
- Rotating the Secret changes only the SDS resource: the LDS version stays,
  Envoy modifies no listener (no drain) and the next handshake shows the new
  certificate.
- A proxy whose verified identity is in another namespace, and any stream on
  the plain-text port, get no secret; each refusal is counted by reason and
  listed in ``/debug/syncz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from meshkit import free_port, poll

from lanes import lane_address
from pilotfish.ca import (
    CA_METHOD,
    CONTROL_PLANE_DNS_NAME,
    CreateCertificateRequest,
    CreateCertificateResponse,
    SpiffeId,
)
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.xds.server import ADS_METHOD
from pilotfish.xds.types import CLUSTER_TYPE, LISTENER_TYPE, SECRET_TYPE
from pki import Leaf, TestCa, serial_of, tls_secret

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GW_NS = "istio-system"
GW_SA = "istio-ingressgateway-service-account"
GW_ID = f"istio-ingressgateway.{GW_NS}"
HOST = "shop.example.test"
SECRET = f"kubernetes://{GW_NS}/shop-cert"
DENIED = "pilotfish_xds_secret_denied_total"


@dataclass
class GatewayRun:
    cp: ControlPlane
    config_dir: Path
    ip: str
    https_port: int
    admin_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    work_dir: Path
    root_pem: bytes

    def write(self, name: str, text: str) -> None:
        path = self.config_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def log(self) -> str:
        envoy = self.work_dir / "envoy.log"
        tail = envoy.read_text(errors="replace")[-4000:] if envoy.exists() else ""
        return f"{self.log_path.read_text(errors='replace')[-4000:]}\n--- envoy ---\n{tail}"

    def metric(self, name: str, **labels: str) -> float:
        return self.cp.registry.get_sample_value(name, labels) or 0.0


def _gateway_config(port: int) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: shop, namespace: default}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: shop, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: https, protocol: HTTPS}}
    hosts: [{HOST}]
    tls: {{mode: SIMPLE, credentialName: shop-cert}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop, namespace: default}}
spec:
  hosts: [{HOST}]
  gateways: [shop]
  http: [{{route: [{{destination: {{host: shop}}}}]}}]
"""


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayRun]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    settings = ControlPlaneSettings(
        config_paths=(str(config_dir),),
        xds_port=0,
        http_port=0,
        secure_port=0,
        xds_mtls_port=0,
        ca_dir=str(tmp_path / "ca"),
        poll_interval=0.05,
    )
    cp = ControlPlane(settings)
    await cp.start()
    assert cp.ca is not None
    token_file = tmp_path / "ca-token"
    token_file.write_text(cp.ca.tokens.register(GW_NS, GW_SA, "istio-ingressgateway"))
    token_file.chmod(0o600)
    root_file = tmp_path / "root.pem"
    root_file.write_text(cp.ca.root_pem)
    # An address no mesh of any lane uses (meshkit's are 127.100-115.*.*).
    ip = lane_address("127.76.1.77")
    https_port, admin, health = free_port(ip), free_port(ip), free_port(ip)
    # The SDS socket path must stay under 108 bytes: a short work directory.
    work_dir = Path(tempfile.mkdtemp(prefix="pf-gwsds-"))
    log_path = tmp_path / "gateway.log"
    args = [
        sys.executable,
        "-m",
        "pilotfish.cli.agent",
        "--role",
        "gateway",
        "--name",
        "istio-ingressgateway",
        "--namespace",
        GW_NS,
        "--service-account",
        GW_SA,
        "--label",
        "istio=ingressgateway",
        "--ip",
        ip,
        "--admin-address",
        ip,
        "--health-bind",
        ip,
        "--admin-port",
        str(admin),
        "--health-port",
        str(health),
        "--stats-port",
        "0",
        "--xds-address",
        f"127.0.0.1:{cp.xds_port}",
        "--xds-secure-address",
        f"127.0.0.1:{cp.xds_mtls_port}",
        "--ca-address",
        f"127.0.0.1:{cp.secure_port}",
        "--ca-token-file",
        str(token_file),
        "--root-cert-file",
        str(root_file),
        "--concurrency",
        "1",
        "--drain-duration",
        "1",
        "--work-dir",
        str(work_dir),
    ]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    run = GatewayRun(
        cp, config_dir, ip, https_port, admin, proc, log_path, work_dir, cp.ca.root_pem.encode()
    )
    try:
        yield run
    finally:
        envoy_pid = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            envoy_pid = int((work_dir / "envoy.pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if envoy_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(envoy_pid, signal.SIGKILL)
        await cp.close()
        shutil.rmtree(work_dir, ignore_errors=True)


async def _served_serial(run: GatewayRun, ca: TestCa) -> int | None:
    """The serial of the certificate the gateway presents for ``HOST`` (None: no TLS)."""
    ctx = ssl.create_default_context(cadata=ca.ca_pem)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(run.ip, run.https_port, ssl=ctx, server_hostname=HOST), 5
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return serial_of(der)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _get(url: str, token: str | None = None, **params: str) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params=params, headers=headers) as resp,
    ):
        assert resp.status == 200, (url, resp.status)
        return await resp.text()


async def _api(run: GatewayRun, path: str, **params: str) -> str:
    """GET ``path`` of the control plane's HTTP API, with its token."""
    url = f"http://127.0.0.1:{run.cp.http_port}{path}"
    return await _get(url, run.cp.api_token.reveal(), **params)


async def _envoy_stats(run: GatewayRun, prefix: str) -> dict[str, int]:
    text = await _get(f"http://{run.ip}:{run.admin_port}/stats", filter=prefix)
    stats: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(": ")
        with contextlib.suppress(ValueError):
            stats[name] = int(value)
    return stats


async def _proxy_config_secrets(run: GatewayRun, output: str) -> str:
    return await _cli(run, "proxy-config", "secrets", GW_ID, "-o", output)


async def _cli(run: GatewayRun, *args: str) -> str:
    """``pilotfish ARGS`` against this control plane; its standard output."""
    argv = [sys.executable, "-m", "pilotfish.cli.main", *args]
    argv += ["--control-plane", f"http://127.0.0.1:{run.cp.http_port}"]
    env = {**os.environ, "PILOTFISH_API_TOKEN": run.cp.api_token.reveal()}
    proc = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _status(run: GatewayRun, proxy_id: str) -> Any:
    for status in run.cp.xds.status():
        if status.proxy_id == proxy_id:
            return status
    return None


def _secrets_sent(run: GatewayRun, proxy_id: str) -> list[str]:
    sent = run.cp.xds.sent(proxy_id) or {}
    secrets = sent.get(SECRET_TYPE)
    return [] if secrets is None else list(secrets.resources)


def _now(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """A synchronous check in the form ``poll`` takes."""

    async def run() -> Any:
        return check()

    return run


# -- raw ADS clients ---------------------------------------------------------------------


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def _workload_creds(run: GatewayRun, namespace: str, account: str) -> tuple[bytes, bytes]:
    """(key, chain) PEM for ``namespace/account``, issued by the mesh CA as agents get them."""
    assert run.cp.ca is not None
    token = run.cp.ca.tokens.register(namespace, account, f"{account}.{namespace}")
    key = ec.generate_private_key(ec.SECP256R1())
    uri = SpiffeId("cluster.local", namespace, account).uri
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    request = CreateCertificateRequest(
        csr=csr.public_bytes(serialization.Encoding.PEM).decode(), token=token
    )
    creds = grpc.ssl_channel_credentials(run.root_pem)
    options = [("grpc.ssl_target_name_override", CONTROL_PLANE_DNS_NAME)]
    async with grpc.aio.secure_channel(f"127.0.0.1:{run.cp.secure_port}", creds, options) as ch:
        call = ch.unary_unary(
            CA_METHOD,
            request_serializer=CreateCertificateRequest.encode,
            response_deserializer=CreateCertificateResponse.decode,
        )
        response: CreateCertificateResponse = await call(request, timeout=10)
    return _key_pem(key), "".join(response.cert_chain).encode()


def _request(
    type_url: str, node_id: str, meta: dict[str, Any], names: tuple[str, ...] = ()
) -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
    request.node.id = node_id
    metadata = struct_pb2.Struct()
    metadata.update(meta)
    request.node.metadata.CopyFrom(metadata)
    return request


class AdsClient:
    """One ADS stream, read by a background task into a list of responses."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.call = channel.stream_stream(
            ADS_METHOD,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )()
        self.responses: list[discovery_pb2.DiscoveryResponse] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for response in self.call:
                self.responses.append(response)

    def of_type(self, type_url: str) -> list[discovery_pb2.DiscoveryResponse]:
        return [r for r in self.responses if r.type_url == type_url]

    def close(self) -> None:
        self._reader.cancel()
        self.call.cancel()


GATEWAY_META = {
    "NAMESPACE": GW_NS,
    "SERVICE_ACCOUNT": GW_SA,
    "ROLE": "gateway",
    "LABELS": {"istio": "ingressgateway"},
}


async def test_gateway_gets_its_certificate_over_sds_and_rotation_drains_nothing(
    gateway: GatewayRun,
) -> None:
    run = gateway
    ca = TestCa()
    first = ca.issue(HOST, dns=(HOST,))
    run.write("secret.yaml", tls_secret("shop-cert", GW_NS, first))
    run.write("gateway.yaml", _gateway_config(run.https_port))

    async def serving(leaf: Leaf) -> bool:
        if run.proc.poll() is not None:
            raise AssertionError(f"gateway agent exited\n{run.log()}")
        return await _served_serial(run, ca) == leaf.serial

    await poll(lambda: serving(first), "the gateway to serve the first certificate", 40)

    # What the gateway got: the key only in SDS, never in LDS/CDS.
    sent = run.cp.xds.sent(GW_ID)
    assert sent is not None and SECRET in sent[SECRET_TYPE].resources
    for url in (LISTENER_TYPE, CLUSTER_TYPE):
        for data in sent[url].resources.values():
            assert b"PRIVATE KEY" not in data and first.key_pem.encode() not in data
    # Envoy serves the secret before its ACK reaches the control plane.
    await poll(
        lambda: _status(run, GW_ID).types[SECRET_TYPE].synced,
        "the control plane to read the gateway's SDS ACK",
        10,
    )
    status = _status(run, GW_ID)
    assert status.identity == f"spiffe://cluster.local/ns/{GW_NS}/sa/{GW_SA}"
    assert status.types[SECRET_TYPE].synced and not status.secrets_denied
    lds_version = status.types[LISTENER_TYPE].acked_version
    listeners_before = await _envoy_stats(run, r"^listener_manager\.")

    # Rotation: a new certificate in the same Secret.
    second = ca.issue(HOST, dns=(HOST,))
    run.write("secret.yaml", tls_secret("shop-cert", GW_NS, second))
    await poll(lambda: serving(second), "the gateway to serve the rotated certificate", 30)

    status = _status(run, GW_ID)
    assert status.types[LISTENER_TYPE].sent_version == lds_version
    assert status.types[LISTENER_TYPE].acked_version == lds_version
    listeners_after = await _envoy_stats(run, r"^listener_manager\.")
    for stat in ("listener_manager.listener_modified", "listener_manager.listener_added"):
        assert listeners_after[stat] == listeners_before[stat], (stat, listeners_after)
    assert listeners_after["listener_manager.total_listeners_draining"] == 0
    # ...while the secret itself was updated in place, over SDS.
    sds = await _envoy_stats(run, r"^sds\.")
    # (Envoy's stat name: "://" becomes "_".)
    stat = "sds." + SECRET.replace("://", "_")
    assert sds[f"{stat}.update_success"] >= 2 and sds[f"{stat}.update_rejected"] == 0, sds

    # /debug/config_dump shows the secret's name, never its key.
    dump = await _api(run, "/debug/config_dump", proxy=GW_ID)
    assert SECRET in dump
    assert "PRIVATE KEY" not in dump and second.key_pem.split("\n")[1] not in dump
    # So does `pilotfish proxy-config secrets`, with the serving certificate's serial.
    table = await _proxy_config_secrets(run, "table")
    assert SECRET in table and f"{second.serial:x}" in table, table
    for shown in (table, await _proxy_config_secrets(run, "yaml")):
        assert "PRIVATE KEY" not in shown and second.key_pem.split("\n")[1] not in shown


async def test_secrets_go_to_the_verified_owner_only(gateway: GatewayRun) -> None:
    run = gateway
    ca = TestCa()
    leaf = ca.issue(HOST, dns=(HOST,))
    run.write("secret.yaml", tls_secret("shop-cert", GW_NS, leaf))
    run.write("gateway.yaml", _gateway_config(run.https_port))
    await poll(_now(lambda: SECRET in _secrets_sent(run, GW_ID)), "the gateway's secret", 40)

    # A sidecar of default/web on the mTLS port asks for the gateway's secret.
    key, chain = await _workload_creds(run, "default", "web")
    creds = grpc.ssl_channel_credentials(run.root_pem, key, chain)
    options = [("grpc.ssl_target_name_override", CONTROL_PLANE_DNS_NAME)]
    sidecar_meta = {"NAMESPACE": "default", "SERVICE_ACCOUNT": "web", "ROLE": "sidecar"}
    denied_ns = run.metric(DENIED, reason="namespace")
    denied_plain = run.metric(DENIED, reason="plaintext")
    async with grpc.aio.secure_channel(f"127.0.0.1:{run.cp.xds_mtls_port}", creds, options) as ch:
        intruder = AdsClient(ch)
        try:
            await intruder.call.write(_request(LISTENER_TYPE, "web-1.default", sidecar_meta))
            await intruder.call.write(
                _request(SECRET_TYPE, "web-1.default", sidecar_meta, (SECRET,))
            )
            await poll(
                _now(lambda: run.metric(DENIED, reason="namespace") == denied_ns + 1),
                "the refusal to be counted",
            )
            await poll(_now(lambda: intruder.of_type(LISTENER_TYPE)), "LDS")
            status = _status(run, "web-1.default")
            assert status.secrets_denied == {SECRET: "namespace"}
            shown = await _cli(run, "proxy-status")
            assert f"REFUSED web-1.default SDS: secret {SECRET} (namespace)" in shown, shown
            assert status.types[SECRET_TYPE].sent_version == ""
            assert not _secrets_sent(run, "web-1.default")
        finally:
            intruder.close()
    assert intruder.of_type(SECRET_TYPE) == []

    # The plain-text port: even the gateway's own node id gets no secret.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{run.cp.xds_port}") as ch:
        impostor = AdsClient(ch)
        try:
            node = "istio-ingressgateway-2.istio-system"
            await impostor.call.write(_request(LISTENER_TYPE, node, GATEWAY_META))
            await impostor.call.write(_request(SECRET_TYPE, node, GATEWAY_META, (SECRET,)))
            await poll(
                _now(lambda: run.metric(DENIED, reason="plaintext") == denied_plain + 1),
                "the plain-text refusal to be counted",
            )
            (lds,) = await poll(_now(lambda: impostor.of_type(LISTENER_TYPE)), "LDS")
            # The listener names the secret, and holds no key.
            assert SECRET.encode() in lds.SerializeToString()
            assert b"PRIVATE KEY" not in lds.SerializeToString()
            assert _status(run, node).secrets_denied == {SECRET: "plaintext"}
            assert not _secrets_sent(run, node)
        finally:
            impostor.close()
    assert impostor.of_type(SECRET_TYPE) == []

    # Meanwhile the real gateway, verified as istio-system, holds its secret.
    sent = run.cp.xds.sent(GW_ID)
    assert sent is not None and SECRET in sent[SECRET_TYPE].resources
    syncz = json.loads(await _api(run, "/debug/syncz"))
    by_id = {row["proxy_id"]: row for row in syncz}
    assert by_id[GW_ID]["secrets_denied"] == {}
    assert "PRIVATE KEY" not in str(syncz)
