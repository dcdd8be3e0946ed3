"""The data-plane modes benchmark's reference: two static Envoys with mTLS, no product in the way.

Theory of operation. ``write_certs`` makes a throwaway CA (``cryptography``,
ECDSA P-256) and a client and a server certificate with SPIFFE-style URI SANs;
``reference_bootstraps`` writes two static Envoy bootstraps from them. hey (on
the host) -> client Envoy (plain HTTP listener on 127.0.80.1) -> mTLS, the
server's SAN checked -> server Envoy (TLS listener on 127.0.80.2, a client
certificate with the client's SAN required) -> the echo app on 127.0.80.2.
``reference_rows`` measures hey straight to the app (the baseline) and through
the Envoys, with the chain rows' load: their difference is the cost of one
hand-configured mTLS proxy pair, which the mesh rows are compared with.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.dataplane_base import Process, http_get, start_process, wait_for
from bench.dataplane_modes_base import REF_CLIENT_IP, REF_SERVER_IP, Log, ModesParams, measure
from bench.loadgen import LoadSpec
from pilotfish.runtime.ports import free_port

__all__ = ["reference_bootstraps", "reference_rows", "write_certs"]


def write_certs(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a client and a server certificate it signed (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("reference CA"))
        .issuer_name(name("reference CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role in ("client", "server"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(role))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"spiffe://reference.local/{role}")]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        paths[f"{role}_cert"] = directory / f"{role}.pem"
        paths[f"{role}_key"] = directory / f"{role}-key.pem"
        paths[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{role}_key"].write_bytes(key_pem(key))
        paths[f"{role}_key"].chmod(0o600)
    return paths


def _address(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


def _http_listener(name: str, ip: str, port: int, cluster: str) -> dict[str, Any]:
    return {
        "name": name,
        "address": _address(ip, port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": name,
                            "route_config": {
                                "virtual_hosts": [
                                    {
                                        "name": "all",
                                        "domains": ["*"],
                                        "routes": [
                                            {
                                                "match": {"prefix": "/"},
                                                "route": {"cluster": cluster},
                                            }
                                        ],
                                    }
                                ]
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters."
                                        "http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


def _tls_context(certs: Mapping[str, Path], role: str, peer: str) -> dict[str, Any]:
    return {
        "tls_certificates": [
            {
                "certificate_chain": {"filename": str(certs[f"{role}_cert"])},
                "private_key": {"filename": str(certs[f"{role}_key"])},
            }
        ],
        "validation_context": {
            "trusted_ca": {"filename": str(certs["ca"])},
            "match_typed_subject_alt_names": [
                {"san_type": "URI", "matcher": {"exact": f"spiffe://reference.local/{peer}"}}
            ],
        },
    }


def _cluster(name: str, ip: str, port: int, tls: dict[str, Any] | None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(ip, port)}}]}],
        },
    }
    if tls is not None:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                "UpstreamTlsContext",
                **tls,
            },
        }
    return cluster


def reference_bootstraps(
    certs: Mapping[str, Path], ports: Mapping[str, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The client and server Envoys' static bootstraps.

    Client: plain HTTP in on ``REF_CLIENT_IP:listener``, out over mTLS (its
    certificate, the server's SAN checked) to the server Envoy. Server: a TLS
    listener on ``REF_SERVER_IP:tls`` requiring a client certificate of the CA
    with the client's SAN, routing to the app on ``REF_SERVER_IP:app``.
    """
    client = {
        "admin": {"address": _address(REF_CLIENT_IP, ports["client_admin"])},
        "static_resources": {
            "listeners": [_http_listener("outbound", REF_CLIENT_IP, ports["listener"], "server")],
            "clusters": [
                _cluster(
                    "server",
                    REF_SERVER_IP,
                    ports["tls"],
                    {"common_tls_context": _tls_context(certs, "client", "server")},
                )
            ],
        },
    }
    inbound = _http_listener("inbound", REF_SERVER_IP, ports["tls"], "app")
    inbound["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
            "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": _tls_context(certs, "server", "client"),
        },
    }
    server = {
        "admin": {"address": _address(REF_SERVER_IP, ports["server_admin"])},
        "static_resources": {
            "listeners": [inbound],
            "clusters": [_cluster("app", REF_SERVER_IP, ports["app"], None)],
        },
    }
    return client, server


def reference_rows(
    work: Path, params: ModesParams, hey: str, log: Log
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(direct to the app, through the two Envoys), both on loopback addresses."""
    from pilotfish.envoy_binary import find_envoy

    ref = work / "reference"
    ref.mkdir()
    certs = write_certs(ref)
    ports = {k: free_port() for k in ("client_admin", "server_admin", "listener", "tls", "app")}
    client, server = reference_bootstraps(certs, ports)
    with contextlib.ExitStack() as stack:
        app = start_process(
            stack,
            "reference-back",
            [
                sys.executable,
                "-m",
                "pilotfish.samples.echo",
                "--service",
                "back",
                "--version",
                "v1",
                "--host",
                REF_SERVER_IP,
                "--port",
                str(ports["app"]),
            ],
            ref,
        )
        envoys: list[Process] = [app]
        for role, config in (("server", server), ("client", client)):
            path = ref / f"{role}-envoy.json"
            path.write_text(json.dumps(config, indent=1))
            command = [find_envoy(), "-c", str(path), "--concurrency"]
            command += [str(params.envoy_concurrency), "-l", "warning"]
            # A base id of its own: no shared-memory clash with any other Envoy here.
            command += ["--base-id", str((os.getpid() * 2 + len(envoys)) % 60000 + 2000)]
            envoys.append(start_process(stack, f"reference-{role}-envoy", command, ref))
        query = f"/?size={params.response_bytes}"
        direct_url = f"http://{REF_SERVER_IP}:{ports['app']}{query}"
        proxied_url = f"http://{REF_CLIENT_IP}:{ports['listener']}{query}"
        for what, url in (("the echo app", direct_url), ("the client Envoy", proxied_url)):
            wait_for(
                what,
                lambda u=url: http_get(u)[0] == 200,
                params.ready_deadline_s,
                tuple(envoys),
            )
        log(f"reference ready: {proxied_url} -> mTLS -> {REF_SERVER_IP}:{ports['tls']}")
        rows = []
        for url in (direct_url, proxied_url):
            spec = LoadSpec(
                url=url,
                headers=(),
                rate=params.rate,
                connections=params.connections,
                duration_s=params.duration_s,
            )
            rows.append(measure(spec, params.warmup_s, hey))
        for process in envoys:
            process.check_alive()
        return rows[0], rows[1]
