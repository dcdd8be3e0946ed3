"""A hostile app for the isolation end-to-end tests: it tries to break out of its pod.

Run by the mesh as an ordinary Workload (``python tests/e2e/hostile_app.py``). It
serves ``POST /attack`` on ``$PORT``: the body names the targets (paths and
addresses only the test knows, such as the state directory and the control
plane's listening ports), and the answer reports, per attack, whether it was
*stopped* (``{"stopped": bool, "detail": str}``). Every attack is something an
app running as root could do today; the test asserts each one is stopped.
"""

from __future__ import annotations

import glob
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
CA = "/pilotfish.ca.v1.CertificateService/CreateCertificate"
LISTENERS = "type.googleapis.com/envoy.config.listener.v3.Listener"
SECRETS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
Result = dict[str, Any]


def stopped(detail: str) -> Result:
    return {"stopped": True, "detail": detail}


def succeeded(detail: str) -> Result:
    return {"stopped": False, "detail": detail}


def read_files(patterns: list[str]) -> Result:
    """Read every file the patterns match; stopped if none could be read."""
    got = []
    for pattern in patterns:
        for path in glob.glob(pattern, recursive=True) or [pattern]:
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
                got.append(path)
            except OSError:
                pass
    return succeeded(f"read {got}") if got else stopped(f"none readable of {patterns}")


def list_dir(path: str) -> Result:
    try:
        names = os.listdir(path)
    except OSError as exc:
        return stopped(f"listdir: {exc.strerror}")
    return succeeded(f"listed {sorted(names)}") if names else stopped("empty (masked)")


def _ads_node(node_id: str) -> discovery_pb2.DiscoveryRequest:
    namespace = node_id.rsplit(".", 1)[-1]
    request = discovery_pb2.DiscoveryRequest(type_url=LISTENERS)
    request.node.id = node_id
    metadata = struct_pb2.Struct()
    metadata.update(
        {"NAMESPACE": namespace, "SERVICE_ACCOUNT": "istio-ingressgateway-service-account",
         "ROLE": "gateway", "LABELS": {"istio": "ingressgateway"}}
    )  # fmt: skip
    request.node.metadata.CopyFrom(metadata)
    return request


def _first_response(channel: grpc.Channel, request: Any) -> bytes | None:
    stream = channel.stream_stream(
        ADS, request_serializer=lambda m: m.SerializeToString(), response_deserializer=bytes
    )
    done = threading.Event()

    # Keep the request stream open while waiting, as Envoy does.
    def requests() -> Any:
        yield request
        secrets = discovery_pb2.DiscoveryRequest(type_url=SECRETS, node=request.node)
        secrets.resource_names.append("kubernetes://istio-system/gateway-cert")
        yield secrets
        done.wait(5)

    responses = stream(requests(), timeout=4)
    try:
        return bytes(next(responses))
    finally:
        done.set()
        responses.cancel()


def ads_as(node_id: str, targets: list[str], root_pem: str) -> Result:
    """Open ADS as ``node_id`` on every target, plain-text and over TLS without a client
    certificate; stopped if no target sent any configuration."""
    leaks = []
    for target in targets:
        tls = grpc.ssl_channel_credentials(root_pem.encode())
        options = [("grpc.ssl_target_name_override", "pilotfish-control-plane")]
        for kind, channel in (
            ("plaintext", grpc.insecure_channel(target)),
            ("tls", grpc.secure_channel(target, tls, options=options)),
        ):
            with channel:
                try:
                    body = _first_response(channel, _ads_node(node_id))
                except grpc.RpcError:
                    continue
                except Exception:
                    continue
                if body:
                    key = b"PRIVATE KEY" in body
                    leaks.append(
                        f"{kind} {target}: {len(body)} bytes{' with a KEY' if key else ''}"
                    )
    return succeeded("; ".join(leaks)) if leaks else stopped(f"refused on {targets}")


def certificate_for(spiffe_id: str, address: str, root_pem: str, tokens: list[str]) -> Result:
    """Ask the CA for ``spiffe_id`` with every token the app could come up with."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), True
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    creds = grpc.ssl_channel_credentials(root_pem.encode())
    options = [("grpc.ssl_target_name_override", "pilotfish-control-plane")]
    codes = []
    with grpc.secure_channel(address, creds, options=options) as channel:
        call = channel.unary_unary(
            CA, request_serializer=lambda d: json.dumps(d).encode(), response_deserializer=bytes
        )
        for token in tokens:
            try:
                call({"csr": csr, "token": token}, timeout=5)
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
                continue
            return succeeded(f"issued with token {token[:4]}...")
    return stopped(f"refused: {codes}")


def run(argv: list[str]) -> Result:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError as exc:
        return stopped(f"{argv[0]}: {exc.strerror}")
    if proc.returncode == 0:
        return succeeded(f"{' '.join(argv)} exited 0")
    return stopped(f"exit {proc.returncode}: {proc.stderr.strip()[:200]}")


def join_proxy_group() -> Result:
    for attempt in (lambda: os.setgroups([1337]), lambda: os.setgid(1337)):
        try:
            attempt()
        except OSError:
            continue
        return succeeded(f"now in groups {os.getgroups()} gid {os.getgid()}")
    return stopped(f"uid {os.getuid()} gid {os.getgid()} groups {os.getgroups()}")


def signal_processes(pids: list[int]) -> Result:
    hit = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except PermissionError:
            continue
        except ProcessLookupError:
            continue
        hit.append(pid)
    return succeeded(f"may signal {hit}") if hit else stopped(f"EPERM for {pids}")


def write_config(url: str) -> Result:
    """Create a VirtualService through the config API; stopped only by authentication."""
    name = f"hijack-{os.getpid()}-{threading.get_ident()}"
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": ["details"], "http": [{"route": [{"destination": {"host": "ratings"}}]}]},
    }
    request = urllib.request.Request(
        url + "/apis/networking.istio.io/v1/namespaces/default/virtualservices",
        data=json.dumps(doc).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as resp:
            return succeeded(f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return stopped(f"HTTP {exc.code}")
        return succeeded(f"HTTP {exc.code}: the API answered without asking who calls")
    except (OSError, urllib.error.URLError) as exc:
        return stopped(f"{exc}")


def through_sidecar(url: str) -> Result:
    """After the attempts on the capture: a mesh call still crosses the sidecar."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as resp:
            headers = {k.lower(): v for k, v in resp.headers.items()}
    except (OSError, urllib.error.URLError) as exc:
        return succeeded(f"the mesh call failed: {exc}")
    if "x-envoy-upstream-service-time" in headers:
        return stopped(f"answered through the sidecar (server: {headers.get('server')})")
    return succeeded(f"answered without the sidecar: {headers}")


def attacks(body: dict[str, Any]) -> dict[str, Result]:
    state = body["state_dir"]
    root_pem = body["root_pem"]
    iptables = body.get("iptables", "iptables")
    plan: dict[str, Callable[[], Result]] = {
        "read_ca_key": lambda: read_files([f"{state}/ca/root-key.pem"]),
        "list_state_dir": lambda: list_dir(state),
        "read_tokens": lambda: read_files([f"{state}/pods/*/proxy/ca-token", body["other_token"]]),
        "read_config_and_secrets": lambda: read_files([f"{state}/config/**/*", f"{state}/*.json"]),
        "read_gateway_sds": lambda: read_files([f"{state}/pods/istio-ingressgateway/proxy/*"]),
        "certificate_for_other_account": lambda: certificate_for(
            body["other_spiffe"], body["secure"], root_pem, ["", "guess-" + "x" * 38]
        ),
        "ads_as_gateway": lambda: ads_as(body["gateway_node"], body["ads_targets"], root_pem),
        "join_proxy_group": join_proxy_group,
        "signal_other_pods": lambda: signal_processes(body["other_pids"]),
        "read_supervisor_environ": lambda: read_files([f"/proc/{body['supervisor_pid']}/environ"]),
        "write_config_api": lambda: write_config(body["config_api"]),
    }
    if body.get("capture"):
        plan["flush_iptables"] = lambda: run([iptables, "-t", "nat", "-F"])
        plan["bypass_sidecar"] = lambda: through_sidecar(body["mesh_url"])
    out = {}
    for name, attack in plan.items():
        try:
            out[name] = attack()
        except Exception as exc:
            out[name] = {"stopped": True, "detail": f"attack raised {exc!r}"}
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._send(200, {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        self._send(200, attacks(body))

    def _send(self, status: int, doc: Any) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(format % args + "\n")


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
