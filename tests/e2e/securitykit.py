"""Helpers for the security end-to-end tests: extra workloads, in-mesh callers, JWTs, a PKI.

Theory of operation. The tests run one transparent mesh (Bookinfo, the ingress
gateway, and the workloads of ``extras_manifest``). Calls "from inside the mesh"
are made by running a small Python program with ``ip netns exec`` in a client
pod's network namespace: its connections are captured by that pod's sidecar,
so they carry the client pod's workload identity (its service account), as
the pod's own app would. Calls "from the host" are plain ``urllib``/``ssl``
requests that bypass every sidecar except the one they reach.

Everything here observes the mesh from the outside: statuses, bodies, echoed
headers, handshakes, gRPC status codes.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from e2ekit import E2EMesh
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from pilotfish.ca import (
    CA_METHOD,
    CONTROL_PLANE_DNS_NAME,
    CreateCertificateRequest,
    CreateCertificateResponse,
)
from pilotfish.translate.security.mtls import ISTIO_ALPN
from pilotfish.xds.server import ADS_METHOD
from pilotfish.xds.types import CLUSTER_TYPE
from pki import Leaf, TestCa
from pki import tls_secret as shared_tls_secret

__all__ = [
    "ECHO_PORT",
    "GATEWAY_SA",
    "ISSUER",
    "BorrowedIdentity",
    "JwksServer",
    "JwtSigner",
    "PodCaller",
    "Reply",
    "SecurePort",
    "TestPki",
    "extras_manifest",
    "host_request",
    "https_request",
    "make_csr",
    "mesh_mtls_request",
    "spiffe",
    "tls_secret",
    "write_manifest",
]

ECHO_PORT = 8080
ISSUER = "https://issuer.pilotfish.test"
GATEWAY_SA = "istio-ingressgateway-service-account"
_NO_PROXY_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy")


def spiffe(namespace: str, service_account: str) -> str:
    return f"spiffe://cluster.local/ns/{namespace}/sa/{service_account}"


def write_manifest(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def extras_manifest(echo_gateway_port: int) -> str:
    """The echo service, two idle client pods and a Gateway that publishes echo.

    - ``echo-v1`` (``default``, service account ``echo``) behind Service ``echo:8080``;
    - ``sleep`` (``default``, service account ``sleep``) and ``outsider``
      (namespace ``outside``, service account ``outsider``): pods whose app
      only idles, so tests can call from their network namespaces;
    - Gateway ``echo-gateway`` on ``127.0.0.1:<echo_gateway_port>`` routing
      everything to echo.
    """
    idle = '["python", "-c", "import time; time.sleep(10**9)"]'
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: echo, namespace: default, labels: {{app: echo}}}}
        spec:
          selector: {{app: echo}}
          ports:
          - {{name: http, port: {ECHO_PORT}}}
        ---
        apiVersion: pilotfish.io/v1alpha1
        kind: Workload
        metadata: {{name: echo-v1, namespace: default, labels: {{app: echo, version: v1}}}}
        spec:
          serviceAccount: echo
          command: ["python", "-m", "pilotfish.samples.echo", "--service", "echo",
                    "--port", "{ECHO_PORT}"]
          ports:
          - {{name: http, containerPort: {ECHO_PORT}}}
          readinessProbe:
            httpGet: {{path: /health, port: http}}
        ---
        apiVersion: pilotfish.io/v1alpha1
        kind: Workload
        metadata: {{name: sleep, namespace: default, labels: {{app: sleep}}}}
        spec:
          serviceAccount: sleep
          command: {idle}
        ---
        apiVersion: pilotfish.io/v1alpha1
        kind: Workload
        metadata: {{name: outsider, namespace: outside, labels: {{app: outsider}}}}
        spec:
          serviceAccount: outsider
          command: {idle}
        ---
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: echo-gateway, namespace: default}}
        spec:
          selector: {{istio: ingressgateway}}
          servers:
          - port: {{number: {echo_gateway_port}, name: http-echo, protocol: HTTP}}
            hosts: ["*"]
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: echo-public, namespace: default}}
        spec:
          hosts: ["*"]
          gateways: [echo-gateway]
          http:
          - route:
            - destination: {{host: echo, port: {{number: {ECHO_PORT}}}}}
        """)


@dataclass(frozen=True)
class Reply:
    """What a client saw: an HTTP status and body, or ``status`` None and the error."""

    status: int | None
    body: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def echoed_header(self, name: str) -> str:
        """A request header as the echo app received it ("" when absent)."""
        headers = {k.lower(): v for k, v in self.json()["headers"].items()}
        return str(headers.get(name.lower(), ""))


def host_request(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One request from the host; ``Reply(None, error)`` when no HTTP answer came back
    (refused, reset, closed before a status line)."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _NoRedirect()
    )  # no proxies, no redirects
    data = b"" if method in ("POST", "PUT") else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout) as resp:
            return Reply(resp.status, resp.read().decode("utf-8", "replace"), _lower(resp.headers))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read().decode("utf-8", "replace"), _lower(exc.headers))
    except (OSError, http.client.HTTPException) as exc:
        return Reply(None, repr(exc))


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_CLIENT = r"""
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
out = []
for r in json.load(sys.stdin):
    method = r.get("method", "GET")
    data = b"" if method in ("POST", "PUT") else None
    req = urllib.request.Request(r["url"], data=data, method=method, headers=r.get("headers", {}))
    try:
        with opener.open(req, timeout=10) as resp:
            out.append([resp.status, resp.read().decode("utf-8", "replace")])
    except urllib.error.HTTPError as exc:
        out.append([exc.code, exc.read().decode("utf-8", "replace")])
    except Exception as exc:
        out.append([None, repr(exc)])
json.dump(out, sys.stdout)
"""


@dataclass(frozen=True)
class PodCaller:
    """Makes requests from inside pod ``name`` of ``namespace`` (its netns, its sidecar)."""

    mesh: E2EMesh
    namespace: str
    name: str

    def netns(self) -> str:
        state = json.loads((self.mesh.state_dir / "state.json").read_text())
        return str(state["pods"][f"{self.namespace}/{self.name}"]["netns"])

    def call(self, *requests: dict[str, Any]) -> list[Reply]:
        """Each request is ``{"url", "method"?, "headers"?}``; one process makes them all."""
        env = {k: v for k, v in os.environ.items() if k not in _NO_PROXY_ENV}
        proc = subprocess.run(
            ["ip", "netns", "exec", self.netns(), sys.executable, "-c", _CLIENT],
            input=json.dumps(list(requests)),
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        if proc.returncode != 0:
            raise AssertionError(f"client in {self.name} failed: {proc.stderr}")
        return [Reply(status, body) for status, body in json.loads(proc.stdout)]

    def get(self, url: str, **request: Any) -> Reply:
        return self.call({"url": url, **request})[0]


# -- JWT ---------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_int(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class JwtSigner:
    """An RS256 signing key and the JWKS that publishes its public half."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": self.kid,
                    "alg": "RS256",
                    "use": "sig",
                    "n": _b64url_int(numbers.n),
                    "e": _b64url_int(numbers.e),
                }
            ]
        }

    def token(
        self,
        sub: str,
        *,
        aud: str = "echo",
        iss: str = ISSUER,
        expires_in: float = 3600,
    ) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": int(now + expires_in)}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


class _QuietServer(http.server.ThreadingHTTPServer):
    """A client that goes away mid-request (a control plane stopping while it
    fetches) is normal here; anything else is still printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class JwksServer:
    """Serves one JWKS document on ``127.0.0.1`` (for the control plane to fetch)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        body = json.dumps(jwks).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# -- a test PKI and HTTPS clients ----------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


class TestPki(TestCa):
    """The shared test CA (``tests/pki.py``) as these tests use it: ``issue`` returns
    (certificate PEM, key PEM)."""

    __test__ = False  # not a pytest test class

    def issue(  # type: ignore[override]
        self, common_name: str, *, dns: tuple[str, ...] = (), uris: tuple[str, ...] = ()
    ) -> tuple[str, str]:
        leaf = super().issue(common_name, dns, uris)
        return leaf.cert_pem, leaf.key_pem


def tls_secret(name: str, namespace: str, cert: str, key: str, ca: str | None = None) -> str:
    """A ``kubernetes.io/tls`` Secret manifest (``ca.crt`` too when ``ca`` is given)."""
    return shared_tls_secret(name, namespace, Leaf(cert, key, 0), ca)


def https_request(
    port: int,
    sni: str,
    ca_pem: str,
    path: str = "/productpage",
    *,
    client: tuple[Path, Path] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """GET ``path`` over TLS from ``127.0.0.1:port`` with SNI and Host ``sni``, verifying
    the server against ``ca_pem``; ``client`` is (cert file, key file).

    ``Reply(None, error)`` when the handshake or the connection failed before an
    HTTP status line arrived (with TLS 1.3 a refused client certificate shows
    up on the first read, not in ``wrap_socket``).
    """
    ctx = ssl.create_default_context(cadata=ca_pem)
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        tls = ctx.wrap_socket(raw, server_hostname=sni)
        conn = http.client.HTTPConnection(sni, port, timeout=timeout)
        conn.sock = tls
        try:
            conn.request("GET", path, headers={"Host": sni})
            resp = conn.getresponse()
            return Reply(resp.status, resp.read().decode("utf-8", "replace"))
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return Reply(None, repr(exc))


# -- the mesh CA and the secure xDS port, called from the host ------------------------------


def make_csr(uri: str) -> tuple[str, bytes]:
    """(CSR PEM whose only SAN is ``uri``, PKCS#8 key PEM), as an agent makes them."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii"), _pem_key(key).encode()


class SecurePort:
    """gRPC clients of a mesh's secure ports (the CA and xDS over mTLS), verifying the
    control plane like agents do."""

    def __init__(self, mesh: E2EMesh) -> None:
        self.target = f"127.0.0.1:{mesh.secure_port}"
        self.xds_target = f"127.0.0.1:{mesh.xds_mtls_port}"
        self.root_pem = (mesh.state_dir / "ca" / "root-cert.pem").read_bytes()

    def channel(
        self, client: tuple[bytes, bytes] | None = None, target: str | None = None
    ) -> grpc.Channel:
        """To the CA port, or ``target``; ``client`` is (key PEM, certificate chain PEM)."""
        if client is None:
            creds = grpc.ssl_channel_credentials(self.root_pem)
        else:
            creds = grpc.ssl_channel_credentials(self.root_pem, client[0], client[1])
        return grpc.secure_channel(
            target or self.target,
            creds,
            options=[("grpc.ssl_target_name_override", CONTROL_PLANE_DNS_NAME)],
        )

    def create_certificate(
        self, csr: str, token: str, ttl_seconds: int | None = None
    ) -> CreateCertificateResponse:
        """One CreateCertificate call; raises ``grpc.RpcError`` with the CA's status."""
        with self.channel() as channel:
            call = channel.unary_unary(
                CA_METHOD,
                request_serializer=CreateCertificateRequest.encode,
                response_deserializer=CreateCertificateResponse.decode,
            )
            response: CreateCertificateResponse = call(
                CreateCertificateRequest(csr=csr, token=token, ttl_seconds=ttl_seconds),
                timeout=10,
            )
            return response

    def first_cds(
        self,
        client: tuple[bytes, bytes] | None,
        namespace: str,
        account: str,
        target: str | None = None,
    ) -> discovery_pb2.DiscoveryResponse:
        """Open ADS as a sidecar of ``namespace``/``account`` on the mTLS port (or
        ``target``); the first CDS response (raises ``grpc.RpcError`` when refused)."""
        request = discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE)
        request.node.id = f"e2e-forger-0.{namespace}"
        metadata = struct_pb2.Struct()
        metadata.update({"NAMESPACE": namespace, "SERVICE_ACCOUNT": account, "ROLE": "sidecar"})
        request.node.metadata.CopyFrom(metadata)
        with self.channel(client, target or self.xds_target) as channel:
            stream = channel.stream_stream(
                ADS_METHOD,
                request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
            )
            responses = stream(iter([request]), timeout=10)
            try:
                response: discovery_pb2.DiscoveryResponse = next(responses)
                return response
            finally:
                responses.cancel()


def mesh_mtls_request(
    address: tuple[str, int],
    root_pem: bytes,
    client: tuple[Path, Path],
    path: str = "/",
    timeout: float = 5.0,
) -> tuple[Reply, int]:
    """GET ``path`` over a *new* mesh-mTLS connection to a sidecar's inbound port, as a
    mesh client would: the server's chain is verified against the mesh root (its only
    name is a SPIFFE URI, so no hostname check), offering the mesh's ALPN,
    ``client`` = (chain file, key file).
    Returns the reply and the serial number of the certificate the server presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=root_pem.decode("ascii"))
    ctx.load_cert_chain(str(client[0]), str(client[1]))
    # The ALPN a mesh client (a sidecar's upstream TLS) offers: under PERMISSIVE
    # only TLS offering it is mesh mTLS, other TLS goes through to the app.
    ctx.set_alpn_protocols(list(ISTIO_ALPN))
    raw = socket.create_connection(address, timeout=timeout)
    tls = ctx.wrap_socket(raw, server_hostname=None)
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    serial = x509.load_der_x509_certificate(der).serial_number
    conn = http.client.HTTPConnection(address[0], address[1], timeout=timeout)
    conn.sock = tls
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return Reply(resp.status, resp.read().decode("utf-8", "replace")), serial
    finally:
        conn.close()


class BorrowedIdentity:
    """Certificates for a pod's identity, obtained from the CA with that pod's token
    (``<state>/pods/<pod>/proxy/ca-token``), so the test can be a mesh client.

    ``files()`` returns (chain file, key file), re-issued once ``max_age`` seconds
    old so a short ``--cert-ttl`` never leaves the test with an expired one.
    """

    def __init__(self, mesh: E2EMesh, pod: str, spiffe_id: str, folder: Path) -> None:
        self.port = SecurePort(mesh)
        self._token_file = mesh.state_dir / "pods" / pod / "proxy" / "ca-token"
        self._id = spiffe_id
        self._files = folder / f"{pod}-chain.pem", folder / f"{pod}-key.pem"
        self._issued = -1e9

    def files(self, max_age: float = 5.0) -> tuple[Path, Path]:
        if time.monotonic() - self._issued > max_age:
            csr, key = make_csr(self._id)
            token = self._token_file.read_text().strip()
            issued = self.port.create_certificate(csr, token)
            self._files[0].write_text("".join(issued.cert_chain))
            self._files[1].write_bytes(key)
            self._issued = time.monotonic()
        return self._files
