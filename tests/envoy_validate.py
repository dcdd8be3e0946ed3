"""Run real Envoy in validate mode on built configuration (shared by the golden tests).

``bootstrap`` puts a proxy's built listeners, clusters and secrets into a
static bootstrap: RDS and EDS references resolve over an ADS cluster declared
in it (never dialed in validate mode); every route configuration is also put
inline on an extra listener of its own so that Envoy validates the routes
too; with ``parse_secrets`` each static secret gets a cluster using it, so
Envoy parses its certificate and key. ``validate`` runs one Envoy per
bootstrap side by side and returns the failures.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import json_format

from pilotfish import ir
from pilotfish.envoy_binary import find_envoy
from pilotfish.xds.build import build_cluster, build_listener
from pilotfish.xds.build.secrets import build_secret
from pilotfish.xds.build.tls import SDS_CLUSTER, TLS_TRANSPORT_SOCKET

__all__ = ["bootstrap", "validate"]

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


def bootstrap(
    proxy: str,
    config: ir.ProxyConfig,
    *,
    parse_secrets: bool = True,
    extra_clusters: tuple[ir.Cluster, ...] = (),
) -> bootstrap_pb2.Bootstrap:
    """A static bootstrap holding ``config`` (see the module docstring);
    ``extra_clusters`` stand in for clusters routes name but ``config`` lacks."""
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
    statics.clusters.extend(
        build_cluster(c) for c in (*config.clusters, *extra_clusters, xds_cluster, sds_cluster)
    )
    statics.listeners.extend(build_listener(listener) for listener in config.listeners)
    statics.secrets.extend(build_secret(s) for s in config.secrets)
    # Envoy loads a static secret only when something uses it: one cluster each.
    for index, secret in enumerate(statics.secrets if parse_secrets else ()):
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


def validate(bootstraps: Mapping[str, bootstrap_pb2.Bootstrap], tmp_path: Path) -> list[str]:
    """Failures (name, exit status, Envoy's output) of ``envoy --mode validate`` on
    each bootstrap; empty when Envoy accepts all of them."""
    envoy = str(find_envoy())
    running: dict[str, subprocess.Popen[str]] = {}
    for name, config in bootstraps.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json_format.MessageToJson(config), encoding="utf-8")
        running[name] = subprocess.Popen(
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
    for name, process in running.items():
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0 or "OK" not in output:
            failures.append(f"--- {name} (exit {process.returncode}):\n{output}")
    return failures
