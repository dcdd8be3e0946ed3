"""Real Envoy accepts what every golden case translates to.

For each case and proxy, the built listeners and clusters go into a static
bootstrap and ``envoy --mode validate`` checks it (regexes, filter configs,
cluster types) without binding ports or connecting anywhere. RDS and EDS
references resolve over an ADS cluster declared in the bootstrap; every route
configuration is also put inline on an extra listener of its own so that
Envoy validates the routes too; the credential secrets a proxy's listeners and
clusters name (served over SDS on ADS in real proxies) are added as static
secrets so that Envoy parses their certificates and keys as well. The
proxies of one case run side by side.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import json_format
from translate_cases import case_names, translate_case

from pilotfish import ir
from pilotfish.envoy_binary import find_envoy
from pilotfish.xds.build import build_cluster, build_listener
from pilotfish.xds.build.secrets import build_secret
from pilotfish.xds.build.tls import SDS_CLUSTER, TLS_TRANSPORT_SOCKET

pytestmark = pytest.mark.integration

ADS_CLUSTER = "xds-grpc"
INLINE_ROUTES_BASE_PORT = 20000


def _secret_user(name: str, secret: secret_pb2.Secret) -> cluster_pb2.Cluster:
    """A static cluster whose TLS context uses ``secret`` (so Envoy parses it)."""
    cluster = build_cluster(
        ir.Cluster(name, "STATIC", endpoints=(ir.Endpoint("127.0.0.1", 1),), direction="other")
    )
    ctx = tls_pb2.UpstreamTlsContext()
    if secret.HasField("validation_context"):
        ctx.common_tls_context.validation_context_sds_secret_config.name = secret.name
    else:
        ctx.common_tls_context.tls_certificate_sds_secret_configs.add(name=secret.name)
    cluster.transport_socket.name = TLS_TRANSPORT_SOCKET
    cluster.transport_socket.typed_config.Pack(ctx)
    return cluster


def _bootstrap(proxy: str, config: ir.ProxyConfig) -> bootstrap_pb2.Bootstrap:
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = f"{proxy}.default"
    bootstrap.node.cluster = proxy
    ads = bootstrap.dynamic_resources.ads_config
    ads.api_type = config_source_pb2.ApiConfigSource.GRPC
    ads.transport_api_version = config_source_pb2.V3
    ads.grpc_services.append(
        grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=ADS_CLUSTER)
        )
    )
    xds_cluster = ir.Cluster(
        ADS_CLUSTER,
        "STATIC",
        http2=True,
        endpoints=(ir.Endpoint("127.0.0.1", 15010),),
        direction="other",
    )
    # TLS contexts fetch mesh certificates from the agent over this cluster
    # (a Unix socket in real proxies; never dialed in validate mode).
    sds_cluster = ir.Cluster(
        SDS_CLUSTER,
        "STATIC",
        http2=True,
        endpoints=(ir.Endpoint("127.0.0.1", 15019),),
        direction="other",
    )
    statics = bootstrap.static_resources
    statics.clusters.extend(build_cluster(c) for c in (*config.clusters, xds_cluster, sds_cluster))
    statics.listeners.extend(build_listener(listener) for listener in config.listeners)
    statics.secrets.extend(build_secret(s) for s in config.secrets)
    # Envoy loads a static secret only when something uses it: one cluster each.
    for index, secret in enumerate(statics.secrets):
        statics.clusters.append(_secret_user(f"validate_secret_{index}", secret))
    for index, routes in enumerate(config.route_configs):
        hcm = ir.HttpConnectionManager(f"inline_{routes.name}", inline_routes=routes)
        statics.listeners.append(
            build_listener(
                ir.Listener(
                    f"inline_routes_{index}",
                    "127.0.0.1",
                    INLINE_ROUTES_BASE_PORT + index,
                    (ir.FilterChain("inline", hcm),),
                )
            )
        )
    return bootstrap


@pytest.mark.parametrize("case", case_names())
def test_envoy_accepts_case(case: str, tmp_path: Path) -> None:
    envoy = str(find_envoy())
    running: dict[str, subprocess.Popen[str]] = {}
    for proxy, config in translate_case(case).proxies.items():
        path = tmp_path / f"{proxy}.json"
        bootstrap = _bootstrap(proxy, config)
        path.write_text(json_format.MessageToJson(bootstrap), encoding="utf-8")
        running[proxy] = subprocess.Popen(
            [
                envoy,
                "--mode",
                "validate",
                "-c",
                str(path),
                "--log-level",
                "warn",
                "--disable-hot-restart",
                "--base-id",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    failures = []
    for proxy, process in running.items():
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0 or "OK" not in output:
            failures.append(f"--- {case} / {proxy} (exit {process.returncode}):\n{output}")
    assert not failures, "\n".join(failures)
